"""What each function folder needs from its deployment, read from the code with ``ast``.

For every ``functions/<name>/`` folder: the entry points (functions decorated with
``@functions_framework.cloud_event`` or ``@functions_framework.http``), every environment
variable the code reads (``shared.settings.env_*`` calls, ``project_id()``, ``os.environ`` and
``os.getenv``) with its default, and the secret ids and topic ids it uses by default (settings
named ``*_SECRET`` / ``*_TOPIC`` with a string default, and ``SecretStore`` calls or
``AccessTokenReader`` given a literal id).

Used by tests/terraform/test_terraform_agrees_with_code.py and tools/config_table.py, so the
test and the configuration table can never disagree about what a function reads.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"

DECORATORS = {"cloud_event": "cloud_event", "http": "http"}

# shared.settings readers: name -> position of the default argument (None: no default).
SETTINGS_READERS: dict[str, int | None] = {
    "env_str": 1,
    "env_optional": None,
    "env_int": 1,
    "env_float": 1,
    "env_bool": 1,
    "env_choice": 2,
    "env_json": 1,
}
SECRET_STORE_METHODS = frozenset(
    {"read", "read_optional", "add_version", "info", "info_optional", "update_annotations"}
)
# Set by the platform on every Cloud Functions / Cloud Run instance.
PLATFORM_VARIABLES = frozenset({"FUNCTION_TARGET", "K_SERVICE", "K_REVISION", "PORT"})

NO_DEFAULT = object()


@dataclass(frozen=True)
class EnvRead:
    name: str
    reader: str  # env_str, env_int, ..., project_id, os.environ
    required: bool
    default: Any  # a Python value, or the source text of a non-literal default; None if none
    file: str
    line: int
    setting: str = ""  # the keyword the value is passed as (the Settings field), if any
    comment: str = ""  # a comment on the line or just above it

    @property
    def kind(self) -> str:
        return {
            "env_int": "integer",
            "env_float": "number",
            "env_bool": "true/false",
            "env_choice": "one of",
            "env_json": "JSON",
        }.get(self.reader, "string")


@dataclass
class FunctionFolder:
    name: str
    path: Path
    entry_points: dict[str, str] = field(default_factory=dict)  # name -> cloud_event | http
    env: list[EnvRead] = field(default_factory=list)
    literal_secrets: set[str] = field(default_factory=set)
    # Structured log fields (jsonPayload keys) and the values given for ``provider``.
    log_fields: set[str] = field(default_factory=set)
    providers: set[str] = field(default_factory=set)
    log_methods: set[str] = field(default_factory=set)  # fields(**x.method()) to resolve

    def variables(self) -> dict[str, list[EnvRead]]:
        out: dict[str, list[EnvRead]] = {}
        for read in self.env:
            out.setdefault(read.name, []).append(read)
        return out

    def required(self) -> set[str]:
        """Variables read without a default somewhere (the deployment must set them)."""
        return {r.name for r in self.env if r.required and r.name not in PLATFORM_VARIABLES}

    def secret_settings(self) -> dict[str, str | None]:
        """Environment variables naming a secret -> their default secret id (None if no
        string default)."""
        return _named_settings(self.env, ("_SECRET", "_SECRET_ID"))

    def topic_settings(self) -> dict[str, str | None]:
        return _named_settings(self.env, ("_TOPIC",))


def _named_settings(reads: list[EnvRead], suffixes: tuple[str, ...]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for read in reads:
        if read.name.endswith(suffixes):
            default = read.default if isinstance(read.default, str) else None
            out[read.name] = out.get(read.name) or default
    return out


def _comments(source: str) -> dict[int, str]:
    found: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if not text.startswith(("noqa", "type:", "fmt:")):
                found[tok.start[0]] = text
    return found


def _comment_near(comments: dict[int, str], lines: list[str], first: int, last: int) -> str:
    for number in range(first, last + 1):
        if number in comments:
            return comments[number]
    above: list[str] = []
    number = first - 1
    while number in comments and lines[number - 1].strip().startswith("#"):
        above.insert(0, comments[number])
        number -= 1
    return " ".join(above)


def _literal(node: ast.AST | None) -> Any:
    if node is None:
        return NO_DEFAULT
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _is_os_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


class _Scanner(ast.NodeVisitor):
    def __init__(self, folder: FunctionFolder, file: Path, source: str) -> None:
        self.folder = folder
        self.file = f"functions/{folder.name}/{file.name}"
        self.comments = _comments(source)
        self.lines = source.splitlines()
        self.constants: dict[str, str] = {}
        self.keyword_of: dict[int, str] = {}

    def scan(self, tree: ast.Module) -> None:
        for stmt in tree.body:
            if (
                isinstance(stmt, ast.Assign)
                and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            ):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        self.constants[target.id] = stmt.value.value
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg:
                        for inner in ast.walk(keyword.value):
                            self.keyword_of.setdefault(id(inner), keyword.arg)
        self.visit(tree)

    def _name(self, node: ast.AST | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return self.constants.get(node.id)
        return None

    def _add(self, node: ast.AST, name: str, reader: str, default: Any) -> None:
        required = default is NO_DEFAULT or (default is None and reader == "env_str")
        if reader == "env_optional":
            required, default = False, None
        last = getattr(node, "end_lineno", None) or node.lineno  # type: ignore[attr-defined]
        self.folder.env.append(
            EnvRead(
                name=name,
                reader=reader,
                required=required,
                default=None if default is NO_DEFAULT else default,
                file=self.file,
                line=node.lineno,  # type: ignore[attr-defined]
                setting=self.keyword_of.get(id(node), ""),
                comment=_comment_near(self.comments, self.lines, node.lineno, last),  # type: ignore[attr-defined]
            )
        )

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "functions_framework"
                and target.attr in DECORATORS
            ):
                self.folder.entry_points[node.name] = DECORATORS[target.attr]
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node.func)
        if name in SETTINGS_READERS and node.args:
            variable = self._name(node.args[0])
            if variable:
                position = SETTINGS_READERS[name]
                default: Any = NO_DEFAULT
                if position is not None and len(node.args) > position:
                    default = _literal(node.args[position])
                for keyword in node.keywords:
                    if keyword.arg == "default":
                        default = _literal(keyword.value)
                self._add(node, variable, name, default)
        elif name == "project_id" and not node.args:
            self._add(node, "GOOGLE_CLOUD_PROJECT", "project_id", NO_DEFAULT)
        elif (
            name in ("get", "getenv")
            and node.args
            and (
                (name == "get" and _is_os_environ(node.func.value))  # type: ignore[attr-defined]
                or (name == "getenv" and isinstance(node.func, ast.Attribute))
            )
        ):
            variable = self._name(node.args[0])
            if variable:
                default = _literal(node.args[1]) if len(node.args) > 1 else None
                self._add(node, variable, "os.environ", default)
        elif name in SECRET_STORE_METHODS and isinstance(node.func, ast.Attribute):
            receiver = ast.unparse(node.func.value).lower()
            literal = self._name(node.args[0]) if node.args else None
            if literal and ("store" in receiver or "secret" in receiver):
                self.folder.literal_secrets.add(literal)
        elif name == "fields" and isinstance(node.func, ast.Attribute):
            for keyword in node.keywords:
                if keyword.arg:
                    self._log_field(keyword.arg, keyword.value)
                elif isinstance(keyword.value, ast.Call):
                    # fields(**change.message()): the keys come from that method's dict.
                    self.folder.log_methods.add(_call_name(keyword.value.func))
        elif name == "AccessTokenReader" and node.args:
            literal = self._name(node.args[0])
            if literal:
                self.folder.literal_secrets.add(literal)
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
        if "event" in keys:  # a summary built as a dict, then passed to fields(**values)
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    self._log_field(key.value, value)
        self.generic_visit(node)

    def _log_field(self, name: str, value: ast.expr) -> None:
        self.folder.log_fields.add(name)
        if name == "provider" and isinstance(value, ast.Constant) and isinstance(value.value, str):
            self.folder.providers.add(value.value)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if _is_os_environ(node.value) and isinstance(node.ctx, ast.Load):
            variable = self._name(node.slice)
            if variable:
                self._add(node, variable, "os.environ", NO_DEFAULT)
        self.generic_visit(node)


def _dict_keys_of_methods(trees: list[ast.Module], methods: set[str]) -> set[str]:
    keys: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in methods:
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Dict):
                        keys |= {
                            k.value
                            for k in inner.keys
                            if isinstance(k, ast.Constant) and isinstance(k.value, str)
                        }
    return keys


def scan_folder(path: Path) -> FunctionFolder:
    folder = FunctionFolder(path.name, path)
    trees = []
    for file in sorted(path.glob("*.py")):
        source = file.read_text("utf-8")
        tree = ast.parse(source, str(file))
        trees.append(tree)
        _Scanner(folder, file, source).scan(tree)
    folder.log_fields |= _dict_keys_of_methods(trees, folder.log_methods)
    return folder


def function_folders(root: Path = FUNCTIONS_DIR) -> list[FunctionFolder]:
    """Every folder under functions/ with a main.py, scanned."""
    return [scan_folder(p) for p in sorted(root.iterdir()) if (p / "main.py").is_file()]
