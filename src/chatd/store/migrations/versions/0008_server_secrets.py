"""Server secrets.

The "owner_ids" secret keys the HMAC that gives static API keys their owner ids.
The secret itself is made at start (store/owners.py), not here: a migration is code,
the same for every database. (A static key's records are moved to its new owner id at
start through the owner indexes of 0007, without reading whole tables.)

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("server_secrets")
