"""MySQL parameters rendered by the store's fast path are exactly what pymysql would send."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.databases import _mysql_admin, require_mysql
from tinychat.server.store.sql import _mysql_renderer

pytestmark = pytest.mark.integration

VALUES = st.one_of(
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.text(),  # quotes, backslashes, NUL, Ctrl-Z, any code point
    st.sampled_from(["'", "\\", "\\'", "''", "\x00", "\x1a", "%s", "%%", "\r\n", "é", "😀"]),
    st.none(),
    st.booleans(),
    st.binary(max_size=20),
    st.floats(allow_nan=False, allow_infinity=False),
)


@pytest.fixture(scope="module")
def connection() -> Iterator:
    require_mysql()
    conn = _mysql_admin()
    yield conn
    conn.close()


@pytest.mark.parametrize("sql_mode", ["", "NO_BACKSLASH_ESCAPES"])
@settings(max_examples=300, deadline=None)
@given(params=st.lists(VALUES, max_size=8))
def test_rendered_query_is_pymysqls_own(connection, sql_mode: str, params: list):
    connection.cursor().execute("SET SESSION sql_mode = %s", (sql_mode,))  # the status flag follows the mode
    query = "SELECT " + ", ".join(["%s"] * len(params)) + " FROM DUAL WHERE '%%' = '%%'"  # noqa: S608 - placeholders only
    cursor = connection.cursor()
    assert _mysql_renderer(connection)(query, tuple(params)) == cursor.mogrify(query, tuple(params))


@given(text=st.text(min_size=1))
@settings(max_examples=200, deadline=None)
def test_rendered_strings_come_back_from_the_server_unchanged(connection, text: str):
    connection.cursor().execute("SET SESSION sql_mode = ''")
    cursor = connection.cursor()
    cursor.execute(_mysql_renderer(connection)("SELECT CAST(%s AS CHAR CHARACTER SET utf8mb4)", (text,)))
    assert cursor.fetchone()[0] == text
