"""Group transactions: a group is a thread of kind GROUP whose members have roles."""

from __future__ import annotations

from typing import Any

from tinychat.protocol import Role, ThreadKind
from tinychat.server.store.records import GroupRow, MemberRow


class GroupFullError(Exception):
    """Adding these members would pass the group's cap."""


def create_group(tx: Any, owner_uid: int, name: str, members: list[int], now_ms: int) -> int:
    tx.execute("INSERT INTO threads (kind, last_seq, title, owner_uid, created_at_ms) VALUES (?, 0, ?, ?, ?)",
               (int(ThreadKind.GROUP), name, owner_uid, now_ms))
    thread_id = tx.lastrowid
    rows = [(thread_id, owner_uid, int(Role.OWNER), now_ms)]
    rows += [(thread_id, uid, int(Role.MEMBER), now_ms) for uid in dict.fromkeys(members) if uid != owner_uid]
    for row in rows:
        tx.execute("INSERT INTO thread_members (thread_id, uid, role, read_seq, joined_at_ms) "
                   "VALUES (?, ?, ?, 0, ?)", row)
    return thread_id


def group(tx: Any, thread_id: int) -> tuple[str, int, dict[int, int]] | None:
    row = tx.one("SELECT title, owner_uid FROM threads WHERE thread_id = ? AND kind = ?",
                 (thread_id, int(ThreadKind.GROUP)))
    if row is None:
        return None
    roles = dict(tx.all("SELECT uid, role FROM thread_members WHERE thread_id = ?", (thread_id,)))
    if not roles:
        return None  # dissolved
    return row[0], row[1], roles


def add_members(tx: Any, thread_id: int, uids: list[int], cap: int, now_ms: int) -> list[int]:
    # Lock the thread row so that concurrent additions count each other against the cap.
    tx.one(f"SELECT last_seq FROM threads WHERE thread_id = ?{tx.for_update}", (thread_id,))
    present = {r[0] for r in tx.all("SELECT uid FROM thread_members WHERE thread_id = ?", (thread_id,))}
    new = [uid for uid in dict.fromkeys(uids) if uid not in present]
    if len(present) + len(new) > cap:
        raise GroupFullError(f"{len(present)} members + {len(new)} new > {cap}")
    last_seq = tx.one("SELECT last_seq FROM threads WHERE thread_id = ?", (thread_id,))[0]
    for uid in new:
        # New members start with everything before they joined marked read.
        tx.execute("INSERT INTO thread_members (thread_id, uid, role, read_seq, joined_at_ms) VALUES (?, ?, ?, ?, ?)",
                   (thread_id, uid, int(Role.MEMBER), last_seq, now_ms))
    return new


def remove_member(tx: Any, thread_id: int, uid: int) -> bool:
    return tx.execute("DELETE FROM thread_members WHERE thread_id = ? AND uid = ?", (thread_id, uid)).rowcount > 0


def set_role(tx: Any, thread_id: int, uid: int, role: Role, previous_owner: int) -> None:
    tx.execute("UPDATE thread_members SET role = ? WHERE thread_id = ? AND uid = ?", (int(role), thread_id, uid))
    if role is Role.OWNER:
        tx.execute("UPDATE thread_members SET role = ? WHERE thread_id = ? AND uid = ?",
                   (int(Role.ADMIN), thread_id, previous_owner))
        tx.execute("UPDATE threads SET owner_uid = ? WHERE thread_id = ?", (uid, thread_id))


def dissolve(tx: Any, thread_id: int) -> list[int]:
    """Remove every member; returns who they were."""
    members = [r[0] for r in tx.all("SELECT uid FROM thread_members WHERE thread_id = ?", (thread_id,))]
    tx.execute("DELETE FROM thread_members WHERE thread_id = ?", (thread_id,))
    return members


def groups_of(tx: Any, uid: int) -> list[GroupRow]:
    rows = tx.all(
        "SELECT t.thread_id, t.title, t.owner_uid, m.role, "
        "(SELECT COUNT(*) FROM thread_members c WHERE c.thread_id = t.thread_id) "
        "FROM thread_members m JOIN threads t ON t.thread_id = m.thread_id "
        "WHERE m.uid = ? AND t.kind = ? ORDER BY t.title, t.thread_id", (uid, int(ThreadKind.GROUP)))
    return [GroupRow(thread_id, title, owner, count, role) for thread_id, title, owner, role, count in rows]


def members(tx: Any, thread_id: int) -> list[MemberRow]:
    rows = tx.all("SELECT m.uid, u.username, m.role FROM thread_members m JOIN users u ON u.uid = m.uid "
                  "WHERE m.thread_id = ? ORDER BY m.role DESC, u.username_key", (thread_id,))
    return [MemberRow(*r) for r in rows]
