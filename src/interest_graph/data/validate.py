"""Checks on canonical tables already written: the contract later stages rely on."""

from __future__ import annotations

from interest_graph.schema import EVENT_TYPES, ShopTables


def table_problems(tables: ShopTables) -> list[str]:
    """Everything wrong with a set of canonical tables; empty when they are sound."""
    events, items, users = tables.events, tables.items, tables.users
    problems = []
    checks = {
        "events with a missing user_id, item_id or timestamp": events[
            ["user_id", "item_id", "timestamp"]
        ]
        .isna()
        .any(axis=1)
        .sum(),
        f"events whose event_type is not one of {EVENT_TYPES}": (
            ~events["event_type"].isin(EVENT_TYPES)
        ).sum(),
        "events with a non-positive quantity": (events["quantity"] <= 0).sum(),
        "events whose item_id is not in items": (
            ~events["item_id"].isin(items["item_id"])
        ).sum(),
        "events whose user_id is not in users": (
            ~events["user_id"].isin(users["user_id"])
        ).sum(),
        "repeated item_id in items": items["item_id"].duplicated().sum(),
        "repeated user_id in users": users["user_id"].duplicated().sum(),
    }
    for problem, count in checks.items():
        if int(count):
            problems.append(f"{int(count)} {problem}")
    if events.empty:
        problems.append("no events")
    return problems
