"""Databases the benchmarks build, besides snapshot_bench's one table of poorly
compressible rows:

- `many`: an application schema. 49 tables of a few sizes (two large, six medium,
  forty small lookup-like ones and an accounts table), each with a primary key and one
  or two secondary indexes, 48 foreign keys, unique constraints, jsonb and a sequence.
  A restore spends most of its time building indexes and checking foreign keys.
- `text`: one table of hex text (md5 digests), which zstd compresses about 2:1, as the
  issue's "260 MB database of hex text".

Both are sized by the plain `pg_dump -Fc -Z0` they give, roughly `size_mb`.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from bench.snapshot_bench import MB, Dataset

if TYPE_CHECKING:
    from tests.support.pg import PgCluster

MANY_MB_AT_SCALE_1 = 575  # the plain dump of `many` at scale 1


def build_many(cluster: PgCluster, size_mb: int) -> Dataset:
    """The many-table schema, its plain dump about `size_mb` MB."""
    scale = size_mb / MANY_MB_AT_SCALE_1
    dbname = f"bench_many_{size_mb}mb_{uuid.uuid4().hex[:6]}"
    cluster.create_database(dbname)
    began = time.perf_counter()
    rows = 0

    def n(count: float) -> int:
        return max(10, int(count * scale))

    accounts = n(200_000)
    orders = n(1_300_000)
    with cluster.connect(dbname) as conn:
        conn.execute(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL, "
            "email text NOT NULL, created_at timestamptz NOT NULL)"
        )
        conn.execute(
            "INSERT INTO accounts SELECT g, 'account ' || g, 'user' || g || '@example.com', "
            "timestamptz '2025-01-01' - g * interval '1 minute' FROM generate_series(1, %s) g",
            (accounts,),
        )
        conn.execute("CREATE UNIQUE INDEX accounts_email ON accounts (email)")
        rows += accounts
        for name, count in (("orders", orders), ("events", n(1_600_000))):
            conn.execute(
                f"CREATE TABLE {name} (id bigint PRIMARY KEY, "
                "account_id bigint NOT NULL REFERENCES accounts, kind text NOT NULL, "
                "amount numeric(12,2), payload text, created_at timestamptz NOT NULL)"
            )
            conn.execute(
                f"INSERT INTO {name} SELECT g, 1 + (g::bigint * 7919) %% %s, "
                "(ARRAY['a','bb','ccc','dddd'])[1 + g %% 4], (g %% 10000) / 100.0, "
                "md5(g::text) || ' ' || md5((g * 3)::text), "
                "timestamptz '2025-01-01' - g * interval '1 second' "
                "FROM generate_series(1, %s) g",
                (accounts, count),
            )
            conn.execute(f"CREATE INDEX {name}_account ON {name} (account_id, created_at)")
            conn.execute(f"CREATE INDEX {name}_kind ON {name} (kind, amount)")
            rows += count
        for i in range(6):
            count = n(250_000)
            conn.execute(
                f"CREATE TABLE items_{i} (id bigint PRIMARY KEY, "
                "order_id bigint NOT NULL REFERENCES orders, sku text NOT NULL, "
                "qty int NOT NULL, note text)"
            )
            conn.execute(
                f"INSERT INTO items_{i} SELECT g, 1 + g %% %s, 'SKU-' || (g %% 5000), "
                "1 + g %% 9, md5(g::text) FROM generate_series(1, %s) g",
                (orders, count),
            )
            conn.execute(f"CREATE INDEX items_{i}_order ON items_{i} (order_id)")
            conn.execute(f"CREATE INDEX items_{i}_sku ON items_{i} (sku)")
            rows += count
        for i in range(40):
            count = n(2000 + i * 1500)
            conn.execute(
                f"CREATE TABLE ref_{i} (id int PRIMARY KEY, account_id bigint REFERENCES "
                "accounts, label text NOT NULL UNIQUE, value jsonb)"
            )
            conn.execute(
                f"INSERT INTO ref_{i} SELECT g, 1 + g %% %s, 'label-{i}-' || g, "
                "jsonb_build_object('k', g, 'v', md5(g::text)) FROM generate_series(1, %s) g",
                (accounts, count),
            )
            conn.execute(f"CREATE INDEX ref_{i}_account ON ref_{i} (account_id)")
            rows += count
        conn.execute("CREATE SEQUENCE invoice_number START 1000")
        conn.execute("SELECT setval('invoice_number', 4242)")
        conn.execute("VACUUM (FREEZE, ANALYZE)")
        conn.execute("CHECKPOINT")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return Dataset(
        requested_mb=size_mb,
        dbname=dbname,
        rows=rows,
        db_size_bytes=int(row[0]),
        load_s=time.perf_counter() - began,
    )


def build_text(cluster: PgCluster, size_mb: int) -> Dataset:
    """One table of hex text, its plain dump about `size_mb` MB (~170 bytes a row)."""
    dbname = f"bench_text_{size_mb}mb_{uuid.uuid4().hex[:6]}"
    cluster.create_database(dbname)
    began = time.perf_counter()
    count = max(1000, size_mb * MB // 172)
    with cluster.connect(dbname) as conn:
        conn.execute(
            "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL, at timestamptz)"
        )
        step = 500_000
        for lo in range(1, count + 1, step):
            conn.execute(
                "INSERT INTO notes SELECT g, md5(g::text) || md5((g + 1)::text) || "
                "md5((g + 2)::text) || md5((g + 3)::text), "
                "timestamptz '2025-01-01' + g * interval '1 second' "
                "FROM generate_series(%s::bigint, %s::bigint) g",
                (lo, min(count, lo + step - 1)),
            )
        conn.execute("VACUUM (FREEZE, ANALYZE) notes")
        conn.execute("CHECKPOINT")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return Dataset(
        requested_mb=size_mb,
        dbname=dbname,
        rows=count,
        db_size_bytes=int(row[0]),
        load_s=time.perf_counter() - began,
    )
