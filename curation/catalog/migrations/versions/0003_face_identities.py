"""identities: a 128-D descriptor and a person per face, and the people table whose ids are never reused

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 00:35:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("faces") as b:
        b.add_column(sa.Column("descriptor", sa.LargeBinary(), nullable=True))
        b.add_column(sa.Column("person_id", sa.Integer(), nullable=True))
        b.create_index(b.f("ix_faces_person_id"), ["person_id"], unique=False)
        b.create_foreign_key("fk_faces_person_id_people", "people", ["person_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("faces") as b:
        b.drop_constraint("fk_faces_person_id_people", type_="foreignkey")
        b.drop_index(b.f("ix_faces_person_id"))
        b.drop_column("person_id")
        b.drop_column("descriptor")
    op.drop_table("people")
