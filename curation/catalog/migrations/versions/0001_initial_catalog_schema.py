"""initial catalog schema

Create Date: 2026-11-23 14:05:54.077818
"""

import sqlalchemy as sa
from alembic import op

from curation.catalog.migration_ops import create_indexes, create_keyed_table, drop_indexes, references

revision = "0001"
down_revision = None

# The tables in the order they are created (each refers only to those before it) and dropped (reversed).
TABLES = (
    "dataset_versions",
    "images",
    "review_rounds",
    "takedowns",
    "faces",
    "near_duplicates",
    "training_runs",
    "dataset_items",
    "decisions",
)
# Each table's single-column indexes (ix_<table>_<column>); images.sha256 is the one unique index.
INDEXES = {
    "dataset_versions": ("name", "sha256"),
    "images": ("owner", "phash", "query", "sha256", "shortcode", "source_kind", "status"),
    "faces": ("decision", "deleted", "flagged", "image_id", "score"),
    "near_duplicates": ("image_id", "other_id"),
    "training_runs": ("dataset_sha256",),
    "dataset_items": ("dataset_id", "face_id", "image_id"),
    "decisions": ("face_id",),
}
UNIQUE = {"images": ("sha256",)}


def upgrade() -> None:
    create_keyed_table(
        "dataset_versions",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("selection_digest", sa.String(length=64), nullable=True),
        sa.Column("labels", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=True),
        sa.Column("code_version", sa.String(length=64), nullable=True),
        sa.Column("superseded_reason", sa.Text(), nullable=True),
        references("parent_id", "dataset_versions"),
        sa.UniqueConstraint("name", "version"),
    )

    create_keyed_table(
        "images",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("phash", sa.String(length=16), nullable=True),
        sa.Column("path", sa.String(length=255), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=True),
        sa.Column("conversion", sa.String(length=255), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("source_ref", sa.Text(), nullable=True),
        sa.Column("query", sa.String(length=255), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("shortcode", sa.String(length=64), nullable=True),
        sa.Column("post_url", sa.Text(), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("likes", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.JSON(), nullable=True),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("analyzed_at", sa.DateTime(timezone=True), nullable=True),
    )

    create_keyed_table(
        "review_rounds",
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("target", sa.Integer(), nullable=True),
        sa.Column("accepted", sa.Integer(), nullable=True),
        sa.Column("reviewer", sa.String(length=64), nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
    )
    create_keyed_table(
        "takedowns",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("image_ids", sa.JSON(), nullable=True),
    )
    create_keyed_table(
        "faces",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("detector", sa.String(length=16), nullable=False),
        sa.Column("det_score", sa.Float(), nullable=True),
        sa.Column("box", sa.JSON(), nullable=True),
        sa.Column("landmarks", sa.JSON(), nullable=True),
        sa.Column("points", sa.JSON(), nullable=True),
        sa.Column("quad", sa.JSON(), nullable=True),
        sa.Column("manual", sa.Boolean(), nullable=False),
        sa.Column("eye_dist", sa.Float(), nullable=True),
        sa.Column("quad_size", sa.Float(), nullable=True),
        sa.Column("padding", sa.Float(), nullable=True),
        sa.Column("blur", sa.Float(), nullable=True),
        sa.Column("roll", sa.Float(), nullable=True),
        sa.Column("yaw", sa.Float(), nullable=True),
        sa.Column("upscaled", sa.Boolean(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("quality", sa.JSON(), nullable=True),
        sa.Column("preview_path", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewer", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=True),
        references("image_id", "images"),
    )

    create_keyed_table(
        "near_duplicates",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("other_id", sa.Integer(), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=False),
        references("image_id", "images"),
        references("other_id", "images"),
        sa.UniqueConstraint("image_id", "other_id"),
    )

    create_keyed_table(
        "training_runs",
        sa.Column("run_dir", sa.Text(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("dataset_sha256", sa.String(length=64), nullable=True),
        sa.Column("cfg", sa.String(length=32), nullable=True),
        sa.Column("kimg_target", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("options", sa.JSON(), nullable=True),
        sa.Column("last_snapshot", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        references("dataset_id", "dataset_versions"),
        sa.UniqueConstraint("idempotency_key"),
    )

    create_keyed_table(
        "dataset_items",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("face_id", sa.Integer(), nullable=True),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("archive_name", sa.String(length=64), nullable=False),
        references("dataset_id", "dataset_versions"),
        references("face_id", "faces"),
        references("image_id", "images"),
    )

    create_keyed_table(
        "decisions",
        sa.Column("face_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("previous", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("reviewer", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        references("face_id", "faces"),
    )
    for table in TABLES:
        create_indexes(table, INDEXES.get(table, ()), unique=UNIQUE.get(table, ()))


def downgrade() -> None:
    for table in reversed(TABLES):
        drop_indexes(table, INDEXES.get(table, ()))
        op.drop_table(table)
