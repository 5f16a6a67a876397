"""The shapes the catalog's Alembic revisions (curation/catalog/migrations/versions/) repeat, written once:
a table keyed by an integer id, a reference to another table's key, and the `ix_<table>_<column>` single-column indexes.

Only for the migration scripts: the schema they build is pinned by tests/curation/test_migration_schema.py.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from alembic import op


def create_keyed_table(name: str, *columns_and_constraints) -> None:
    """op.create_table for a table keyed by an integer `id` (every catalog table but workspace_settings):
    the `id` column first, then the others; SQLAlchemy writes the primary key first among the constraints."""
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), nullable=False),
        *columns_and_constraints,
        sa.PrimaryKeyConstraint("id"),
    )


def references(column: str, table: str) -> sa.ForeignKeyConstraint:
    """`column` holds the `id` of a row of `table`."""
    return sa.ForeignKeyConstraint([column], [f"{table}.id"])


def index_name(table: str, column: str) -> str:
    return f"ix_{table}_{column}"


def create_indexes(table: str, columns: Iterable[str], unique: Iterable[str] = ()) -> None:
    """One index per column, in this order; those in `unique` are unique indexes."""
    columns, unique = list(columns), set(unique)
    if not columns:
        return
    with op.batch_alter_table(table, schema=None) as b:
        for column in columns:
            b.create_index(b.f(index_name(table, column)), [column], unique=column in unique)


def drop_indexes(table: str, columns: Iterable[str]) -> None:
    """Undo create_indexes(table, columns): the same indexes, dropped in the reverse order."""
    columns = list(columns)
    if not columns:
        return
    with op.batch_alter_table(table, schema=None) as b:
        for column in reversed(columns):
            b.drop_index(b.f(index_name(table, column)))


def _foreign_key_name(table: str, column: str, target: str) -> str:
    return f"fk_{table}_{column}_{target}"


def add_reference(b, table: str, column: str, target: str) -> None:
    """Inside `op.batch_alter_table(table) as b`: a nullable `column` pointing at `target`.id, indexed."""
    b.add_column(sa.Column(column, sa.Integer(), nullable=True))
    b.create_index(b.f(index_name(table, column)), [column], unique=False)
    b.create_foreign_key(_foreign_key_name(table, column, target), target, [column], ["id"])


def drop_reference(b, table: str, column: str, target: str) -> None:
    """Undo add_reference(b, table, column, target)."""
    b.drop_constraint(_foreign_key_name(table, column, target), type_="foreignkey")
    b.drop_index(b.f(index_name(table, column)))
    b.drop_column(column)
