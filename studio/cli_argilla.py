"""``python -m studio argilla ...``: where Argilla is, how to log in, team users, reindex."""

from __future__ import annotations


def cmd_argilla(args) -> int:
    from studio import cli  # imported late: studio.cli imports this module while building its parser
    from studio.services import argilla_admin

    if args.action == "info":
        info = argilla_admin.get_argilla_info(with_password=True)
        if args.json:
            cli._print_json(info.to_dict(with_password=True))
            return 0 if info.healthy else 1
        print(f"Argilla   {info.url} ({'embedded' if info.embedded else 'external'})")
        print(f"health    {'ok' if info.healthy else 'NOT OK'}: {info.detail}")
        if info.embedded:
            print(f"login     username {info.username}, password {info.password or '(not created yet: `python -m studio up`)'}")
            if not info.vectors_supported:
                print("search    the embedded osmem-server (no vector search; reindexed after each restart)")
        print(info.login_hint)
        if info.parts:
            print("\nparts")
            cli._table([p.__dict__ for p in info.parts], ["name", "state", "url", "pid", "restarts", "detail"])
        return 0 if info.healthy else 1
    if args.action == "users":
        return _users(args, cli, argilla_admin)
    if args.action == "reindex":
        print(argilla_admin.reindex_search_engine())
    return 0


def _users(args, cli, argilla_admin) -> int:
    if args.users_action == "add":
        user = argilla_admin.add_user(args.name, args.password, role=args.role, workspace=args.workspace)
        print(f"added {user.role} {user.username} to the workspace {args.workspace}; "
              f"they log in at {argilla_admin.get_connection().url}")
        return 0
    users = [u.to_dict() for u in argilla_admin.list_users()]
    if args.json:
        cli._print_json(users)
    else:
        cli._table([u | {"workspaces": ", ".join(u["workspaces"])} for u in users], ["username", "role", "workspaces"])
    return 0


def register(sub) -> None:
    """Add ``argilla info|users|reindex`` to ``python -m studio``'s subparsers."""
    from core.inputs import name_arg
    from studio.cli import _Parser

    argilla = sub.add_parser("argilla", help="the Argilla review server: info, team users, reindex")
    argilla.set_defaults(func=cmd_argilla)
    a_sub = argilla.add_subparsers(dest="action", required=True, parser_class=_Parser)
    info = a_sub.add_parser("info", help="URL, health of each part, and how to log in (prints the owner password)")
    info.add_argument("--json", action="store_true")
    users = a_sub.add_parser("users", help="team members who review in Argilla")
    u_sub = users.add_subparsers(dest="users_action", required=True, parser_class=_Parser)
    add = u_sub.add_parser("add", help="create a user in the default workspace")
    add.add_argument("name", type=name_arg(), help="lowercase letters, digits, '-' and '_'")
    add.add_argument("--password", required=True, help="8 to 100 characters")
    add.add_argument("--role", default="annotator", choices=("annotator", "admin", "owner"))
    add.add_argument("--workspace", type=name_arg(), default="default", help="the Argilla workspace to add them to")
    u_list = u_sub.add_parser("list", help="every user with role and workspaces")
    u_list.add_argument("--json", action="store_true")
    a_sub.add_parser("reindex", help="rebuild the embedded search index from Argilla's database")
