"""review: ratings on faces and history, decisions tied to their round, who closed a round, workspace settings

Create Date: 2026-12-02 00:10:00
"""

import sqlalchemy as sa
from alembic import op

from curation.catalog.migration_ops import add_reference, drop_reference

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("faces") as b:
        b.add_column(sa.Column("rating", sa.Integer(), nullable=True))
    with op.batch_alter_table("decisions") as b:
        b.add_column(sa.Column("rating", sa.Integer(), nullable=True))
        b.add_column(sa.Column("previous_rating", sa.Integer(), nullable=True))
        add_reference(b, "decisions", "round_id", "review_rounds")
    with op.batch_alter_table("review_rounds") as b:
        b.add_column(sa.Column("closed_by", sa.String(length=64), nullable=True))
    op.create_table(
        "workspace_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("workspace_settings")
    with op.batch_alter_table("review_rounds") as b:
        b.drop_column("closed_by")
    with op.batch_alter_table("decisions") as b:
        drop_reference(b, "decisions", "round_id", "review_rounds")
        b.drop_column("previous_rating")
        b.drop_column("rating")
    with op.batch_alter_table("faces") as b:
        b.drop_column("rating")
