"""identities: a 128-D descriptor and a person per face, and the people table whose ids are never reused

Create Date: 2026-12-02 00:35:00
"""

import sqlalchemy as sa
from alembic import op

from curation.catalog.migration_ops import add_reference, create_keyed_table, drop_reference

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    create_keyed_table(
        "people",
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("faces") as b:
        b.add_column(sa.Column("descriptor", sa.LargeBinary(), nullable=True))
        add_reference(b, "faces", "person_id", "people")


def downgrade() -> None:
    with op.batch_alter_table("faces") as b:
        drop_reference(b, "faces", "person_id", "people")
        b.drop_column("descriptor")
    op.drop_table("people")
