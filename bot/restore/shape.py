"""What a staging database is besides its content: its owner, database-level grants,
`ALTER DATABASE … SET` settings, connection limit, comment and locale. A refresh builds
a new database beside staging; before the swap, the new one is given staging's shape, so
that the apps and people who use staging notice nothing but the data."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from bot.errors import AtlasError
from bot.pg import Conn, first_line

# Settings whose value is a list of names, each quoted as an identifier when stored.
LIST_SETTINGS = frozenset(
    {"search_path", "temp_tablespaces", "session_preload_libraries", "local_preload_libraries"}
)

SHAPE = """
SELECT d.oid, pg_get_userbyid(d.datdba), d.datconnlimit, pg_encoding_to_char(d.encoding),
       d.datcollate, d.datctype, d.datlocprovider::text, d.daticulocale,
       shobj_description(d.oid, 'pg_database'), d.datacl IS NULL
FROM pg_database d WHERE d.datname = %s
"""
GRANTS = """
SELECT coalesce(pg_get_userbyid(nullif(a.grantee, 0)), ''), a.privilege_type, a.is_grantable
FROM pg_database d, aclexplode(d.datacl) a WHERE d.oid = %s ORDER BY 1, 2
"""
SETTINGS = """
SELECT coalesce(pg_get_userbyid(nullif(s.setrole, 0)), ''), unnest(s.setconfig)
FROM pg_db_role_setting s WHERE s.setdatabase = %s ORDER BY 1
"""


@dataclass(frozen=True)
class Setting:
    """One `ALTER DATABASE … SET` (role ''), or `ALTER ROLE … IN DATABASE … SET`."""

    role: str
    name: str
    value: str


@dataclass(frozen=True)
class Shape:
    """A database's owner, grants, settings and locale: what a swap carries over."""

    owner: str
    conn_limit: int = -1
    encoding: str = "UTF8"
    collate: str = ""
    ctype: str = ""
    provider: str = "c"  # c (libc) | i (ICU)
    icu_locale: str | None = None
    comment: str | None = None
    # (grantee, privilege, grantable), grantee '' for PUBLIC; None: the default grants
    grants: list[tuple[str, str, bool]] | None = None
    settings: list[Setting] = field(default_factory=list)

    def locale(self) -> tuple[str, str, str, str, str | None]:
        return (self.encoding, self.collate, self.ctype, self.provider, self.icu_locale)


def read_shape(c: psycopg.Connection, name: str) -> Shape | None:
    """The shape of database `name`, or None when there is none of that name."""
    row = c.execute(SHAPE, [name]).fetchone()
    if row is None:
        return None
    oid = row[0]
    grants = None
    if not row[9]:
        grants = [(str(g), str(p), bool(w)) for g, p, w in c.execute(GRANTS, [oid]).fetchall()]
    settings = []
    for role, entry in c.execute(SETTINGS, [oid]).fetchall():
        key, _, value = str(entry).partition("=")
        settings.append(Setting(str(role), key, value))
    return Shape(
        owner=str(row[1]), conn_limit=int(row[2]), encoding=str(row[3]), collate=str(row[4]),
        ctype=str(row[5]), provider=str(row[6]), icu_locale=row[7], comment=row[8],
        grants=grants, settings=settings,
    )  # fmt: skip


def create_like(c: psycopg.Connection, name: str, like: Shape | None) -> None:
    """CREATE DATABASE `name` with the locale of `like` (from template0 where template1's
    differs, which PostgreSQL requires); from template1 otherwise, as drills do."""
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    template = read_shape(c, "template1")
    if like is not None and template is not None and like.locale() != template.locale():
        options = [
            sql.SQL("TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
                sql.Literal(like.encoding), sql.Literal(like.collate), sql.Literal(like.ctype)
            )
        ]
        if like.provider == "i":
            options.append(
                sql.SQL("LOCALE_PROVIDER icu ICU_LOCALE {}").format(sql.Literal(like.icu_locale))
            )
        query = sql.SQL(" ").join([query, *options])
    c.execute(query)


def give_shape(c: psycopg.Connection, name: str, shape: Shape) -> list[str]:
    """Give database `name` the shape staging had; returns warnings for what the role may
    not carry over (another role's settings). An owner or grant it may not set raises:
    the swap would change who may use staging."""
    db = sql.Identifier(name)
    warnings: list[str] = []
    try:
        if shape.comment is not None:
            c.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(shape.comment))
            )
        if shape.conn_limit != -1:
            c.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(
                db, sql.Literal(shape.conn_limit)))  # fmt: skip
        if shape.owner != _me(c):
            c.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                db, sql.Identifier(shape.owner)))  # fmt: skip
        if shape.grants is not None:
            _grant(c, db, shape.grants)
    except psycopg.Error as exc:
        raise AtlasError(
            f"Cannot give the new database staging's owner and grants: {first_line(str(exc))}",
            f"the staging role needs CREATEDB and membership in {shape.owner} (staging's "
            "owner); atlas doctor checks it",
        ) from None
    for setting in shape.settings:
        try:
            c.execute(_set(db, setting))
        except psycopg.Error as exc:
            who = f" for role {setting.role}" if setting.role else ""
            warnings.append(f"setting {setting.name}{who} not carried over: {first_line(str(exc))}")
    return warnings


def _grant(c: psycopg.Connection, db: sql.Identifier, grants: list[tuple[str, str, bool]]) -> None:
    """Exactly staging's grants: PUBLIC's defaults revoked, each grant made again."""
    c.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
    for grantee, privilege, grantable in grants:
        who = sql.SQL("PUBLIC") if not grantee else sql.Identifier(grantee)
        c.execute(
            sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(privilege if privilege.isalpha() else "ALL"), db, who,
                sql.SQL(" WITH GRANT OPTION" if grantable else ""),
            )
        )  # fmt: skip


def _set(db: sql.Identifier, setting: Setting) -> sql.Composed:
    """The statement that stores `setting` on `db`, its value passed as literals."""
    if setting.name in LIST_SETTINGS:
        value = sql.SQL(", ").join(sql.Literal(v) for v in split_names(setting.value))
    else:
        value = sql.Composed([sql.Literal(setting.value)])
    target = sql.SQL("DATABASE {}").format(db)
    if setting.role:
        target = sql.SQL("ROLE {} IN DATABASE {}").format(sql.Identifier(setting.role), db)
    return sql.SQL("ALTER {} SET {} TO {}").format(target, sql.Identifier(setting.name), value)


def split_names(value: str) -> list[str]:
    """A list setting's value as stored (`"$user", public, "My ""quoted"" name"`) as
    the names it lists, unquoted. Pure."""
    names, current, quoted, i = [], "", False, 0
    while i < len(value):
        ch = value[i]
        if quoted and ch == '"' and value[i + 1 : i + 2] == '"':
            current, i = current + '"', i + 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            names.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    if current.strip() or names:
        names.append(current.strip())
    return names


def _me(c: psycopg.Connection) -> str:
    row = c.execute("SELECT current_user").fetchone()
    return str(row[0]) if row else ""


def size_of(conn: Conn, name: str) -> int | None:
    """pg_database_size of `name`, None when it is gone or the role may not see it."""
    try:
        with conn.connect(autocommit=True, connect_timeout=5) as c:
            row = c.execute(
                "SELECT pg_database_size(datname) FROM pg_database WHERE datname = %s", [name]
            ).fetchone()
    except (AtlasError, psycopg.Error):
        return None
    return int(row[0]) if row else None
