"""The metadata repo on PostgreSQL, for collections shared by several processes."""

from storage.postgres.repo import PostgresRepo

__all__ = ["PostgresRepo"]
