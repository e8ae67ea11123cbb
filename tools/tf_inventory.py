"""Print, as JSON, what the root Terraform module deploys: functions, topics, scheduler jobs,
secrets, service accounts and who may read which secret.

    .tools/hcl2/bin/python tools/tf_inventory.py terraform

It runs in its own virtual environment (python-hcl2, see tools/requirements-hcl2.txt; checkov
pins a different python-hcl2), so it uses nothing but the standard library and hcl2. The test
tests/terraform/test_terraform_agrees_with_code.py compares its output with the code.

HCL is evaluated statically, as far as that is possible without a provider: literals,
``var.*`` (defaults), ``local.*``, ``each.*``/``count.index``, ``for_each``/``count``
expansion, conditionals, ``for`` expressions, a few functions (toset, tostring, jsonencode,
base64encode, merge, concat, keys, values, lower, upper, format, join, lookup, contains, one)
and references to resource attributes that are known before apply (a topic's id/name, a
secret's id/secret_id, a service account's email). What cannot be known becomes ``null``
(listed under ``unresolved``).
python-hcl2 8.x keeps the quotes of string literals and block labels; they are removed here.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2  # type: ignore[import-not-found,unused-ignore]

FUNCTION_MODULE_SOURCE = "./modules/function"
PROJECT_PLACEHOLDER = "PROJECT_ID"


class Unknown:
    """A value only known after apply (or beyond this evaluator)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Unknown({self.text!r})"


class EvalError(Exception):
    pass


# --------------------------------------------------------------------------- tokenizer

_PUNCT = [
    "=>",
    "==",
    "!=",
    "<=",
    ">=",
    "&&",
    "||",
    "...",
    ".*",
    "[*]",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    ":",
    "?",
    "!",
    "<",
    ">",
    "+",
    "-",
    "*",
    "/",
    "%",
    "=",
]


@dataclass
class Tok:
    kind: str  # ident | num | str | punct | end
    value: Any


def _read_template(src: str, i: int, *, heredoc: bool = False) -> tuple[list[Any], int]:
    """Parse a quoted template starting after the opening quote; return parts and the index
    after the closing quote. Parts are str or ("expr", source). A heredoc body has no escapes
    and runs to the end of ``src``."""
    parts: list[Any] = []
    buf: list[str] = []
    while i < len(src):
        c = src[i]
        if c == "\\" and i + 1 < len(src) and not heredoc:
            nxt = src[i + 1]
            escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
            if nxt in escapes:
                buf.append(escapes[nxt])
                i += 2
                continue
            if nxt == "u" and i + 5 < len(src):
                buf.append(chr(int(src[i + 2 : i + 6], 16)))
                i += 6
                continue
            buf.append(nxt)
            i += 2
            continue
        if src.startswith("$${", i) or src.startswith("%%{", i):
            buf.append(src[i + 1 : i + 3])
            i += 3
            continue
        if src.startswith("${", i):
            depth, j = 1, i + 2
            while j < len(src) and depth:
                if src[j] == '"':
                    _, j = _read_template(src, j + 1)
                    continue
                if src[j] == "{":
                    depth += 1
                elif src[j] == "}":
                    depth -= 1
                j += 1
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(("expr", src[i + 2 : j - 1]))
            i = j
            continue
        if c == '"' and not heredoc:
            if buf:
                parts.append("".join(buf))
            return parts, i + 1
        buf.append(c)
        i += 1
    if heredoc:
        if buf:
            parts.append("".join(buf))
        return parts, i
    raise EvalError(f"unterminated string in {src!r}")


def tokenize(src: str) -> list[Tok]:
    toks: list[Tok] = []
    i = 0
    while i < len(src):
        c = src[i]
        if c.isspace():
            i += 1
            continue
        if c == '"':
            parts, i = _read_template(src, i + 1)
            toks.append(Tok("str", parts))
            continue
        if c.isdigit():
            m = re.match(r"\d+(\.\d+)?([eE][+-]?\d+)?", src[i:])
            assert m
            text = m.group(0)
            toks.append(Tok("num", float(text) if any(x in text for x in ".eE") else int(text)))
            i += len(text)
            continue
        if c.isalpha() or c == "_":
            m = re.match(r"[A-Za-z_][A-Za-z0-9_\-]*", src[i:])
            assert m
            toks.append(Tok("ident", m.group(0)))
            i += len(m.group(0))
            continue
        for p in _PUNCT:
            if src.startswith(p, i):
                toks.append(Tok("punct", p))
                i += len(p)
                break
        else:
            raise EvalError(f"unexpected character {c!r} in {src!r}")
    toks.append(Tok("end", None))
    return toks


# --------------------------------------------------------------------------- parser (to AST tuples)

_BINARY = [
    ["||"],
    ["&&"],
    ["==", "!="],
    ["<", ">", "<=", ">="],
    ["+", "-"],
    ["*", "/", "%"],
]


class Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = tokenize(src)
        self.i = 0

    def peek(self, offset: int = 0) -> Tok:
        return self.toks[min(self.i + offset, len(self.toks) - 1)]

    def take(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def accept(self, value: str) -> bool:
        tok = self.peek()
        if tok.kind == "punct" and tok.value == value:
            self.i += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.accept(value):
            raise EvalError(f"expected {value!r} in {self.src!r}, got {self.peek().value!r}")

    def parse(self) -> Any:
        node = self.expr()
        if self.peek().kind != "end":
            raise EvalError(f"trailing input in {self.src!r}")
        return node

    def expr(self) -> Any:
        cond = self.binary(0)
        if self.accept("?"):
            yes = self.expr()
            self.expect(":")
            no = self.expr()
            return ("cond", cond, yes, no)
        return cond

    def binary(self, level: int) -> Any:
        if level == len(_BINARY):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            tok = self.peek()
            if tok.kind == "punct" and tok.value in _BINARY[level]:
                self.take()
                right = self.binary(level + 1)
                left = ("bin", tok.value, left, right)
            else:
                return left

    def unary(self) -> Any:
        if self.accept("!"):
            return ("not", self.unary())
        if self.accept("-"):
            return ("neg", self.unary())
        return self.postfix(self.primary())

    def postfix(self, node: Any) -> Any:
        while True:
            if self.accept("."):
                tok = self.take()
                if tok.kind == "num":
                    node = ("index", node, ("lit", tok.value))
                else:
                    node = ("attr", node, tok.value)
            elif self.peek().kind == "punct" and self.peek().value in (".*", "[*]"):
                self.take()
                node = ("splat", node)
            elif self.accept("["):
                key = self.expr()
                self.expect("]")
                node = ("index", node, key)
            else:
                return node

    def primary(self) -> Any:
        tok = self.take()
        if tok.kind == "num":
            return ("lit", tok.value)
        if tok.kind == "str":
            return ("tmpl", [p if isinstance(p, str) else Parser(p[1]).parse() for p in tok.value])
        if tok.kind == "ident":
            if tok.value in ("true", "false"):
                return ("lit", tok.value == "true")
            if tok.value == "null":
                return ("lit", None)
            if self.accept("("):
                args = []
                while not self.accept(")"):
                    args.append(self.expr())
                    self.accept("...")
                    self.accept(",")
                return ("call", tok.value, args)
            return ("var", tok.value)
        if tok.kind == "punct" and tok.value == "(":
            node = self.expr()
            self.expect(")")
            return node
        if tok.kind == "punct" and tok.value == "[":
            if self.peek().kind == "ident" and self.peek().value == "for":
                return self.for_expr("]")
            items = []
            while not self.accept("]"):
                items.append(self.expr())
                self.accept(",")
            return ("list", items)
        if tok.kind == "punct" and tok.value == "{":
            if self.peek().kind == "ident" and self.peek().value == "for":
                return self.for_expr("}")
            pairs = []
            while not self.accept("}"):
                key_tok = self.peek()
                if key_tok.kind == "ident" and self.peek(1).value in ("=", ":"):
                    self.take()
                    key: Any = ("lit", key_tok.value)
                else:
                    key = self.expr()
                if not self.accept("="):
                    self.expect(":")
                pairs.append((key, self.expr()))
                self.accept(",")
            return ("obj", pairs)
        raise EvalError(f"unexpected {tok.value!r} in {self.src!r}")

    def for_expr(self, close: str) -> Any:
        self.take()  # for
        names = [self.take().value]
        if self.accept(","):
            names.append(self.take().value)
        tok = self.take()
        if tok.value != "in":
            raise EvalError(f"expected 'in' in {self.src!r}")
        coll = self.expr()
        self.expect(":")
        first = self.expr()
        second = None
        if close == "}":
            self.expect("=>")
            second = self.expr()
            self.accept("...")
        cond = None
        if self.peek().kind == "ident" and self.peek().value == "if":
            self.take()
            cond = self.expr()
        self.expect(close)
        return ("for", close, names, coll, first, second, cond)


# --------------------------------------------------------------------------- evaluator


def _is_unknown(value: Any) -> bool:
    if isinstance(value, Unknown):
        return True
    if isinstance(value, dict):
        return any(_is_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_is_unknown(v) for v in value)
    return False


def _to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Module:
    """The root module's files, evaluated lazily."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Absolute, so source_dir can be reported relative to the module's parent (the repo).
        self.path_module = str(directory.resolve())
        self.variables: dict[str, Any] = {}
        self.local_src: dict[str, Any] = {}
        self.local_val: dict[str, Any] = {}
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.modules: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, Any] = {}
        self._instances: dict[tuple[str, str], dict[Any, dict[str, Any]]] = {}
        for file in sorted(directory.glob("*.tf")):
            with file.open() as handle:
                doc = hcl2.load(handle)
            for block in doc.get("variable", []):
                for name, body in block.items():
                    self.variables[unquote(name)] = body
            for block in doc.get("locals", []):
                for name, value in block.items():
                    if not name.startswith("__"):
                        self.local_src[unquote(name)] = value
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for rname, body in named.items():
                        self.resources[(unquote(rtype), unquote(rname))] = body
            for block in doc.get("module", []):
                for name, body in block.items():
                    self.modules[unquote(name)] = body
            for block in doc.get("output", []):
                for name, body in block.items():
                    self.outputs[unquote(name)] = body

    # -- raw hcl2 values -> python values ----------------------------------------------

    def value(self, raw: Any, scope: dict[str, Any]) -> Any:
        if isinstance(raw, str):
            return self.eval_src(raw, scope)
        if isinstance(raw, list):
            return [self.value(v, scope) for v in raw]
        if isinstance(raw, dict):
            return {
                unquote(k): self.value(v, scope) for k, v in raw.items() if not k.startswith("__")
            }
        return raw

    def eval_src(self, raw: str, scope: dict[str, Any]) -> Any:
        text = raw.strip()
        if text.startswith("${") and text.endswith("}") and _single_interpolation(text):
            text = text[2:-1]
        elif text.startswith(('"<<', "<<")) and "\n" in text:
            # python-hcl2 8.x wraps a heredoc, markers included, in quotes.
            return self.heredoc(text.removeprefix('"').removesuffix('"'), scope)
        elif not text.startswith('"'):
            # python-hcl2 leaves some plain identifiers (ignore_changes entries) unquoted.
            return text
        try:
            return self.eval(Parser(text).parse(), scope)
        except EvalError:
            return Unknown(raw)

    def heredoc(self, text: str, scope: dict[str, Any]) -> Any:
        first, _, rest = text.partition("\n")
        lines = rest.split("\n")[:-1]  # the last line is the closing marker
        if first.startswith("<<-"):
            indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
            cut = min(indents, default=0)
            lines = [line[cut:] for line in lines]
        body = "\n".join(lines) + "\n"
        try:
            parts, _ = _read_template(body, 0, heredoc=True)
            node = ("tmpl", [p if isinstance(p, str) else Parser(p[1]).parse() for p in parts])
            return self.eval(node, scope)
        except EvalError:
            return Unknown("heredoc")

    def eval(self, node: Any, scope: dict[str, Any]) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "tmpl":
            out = []
            for part in node[1]:
                if isinstance(part, str):
                    out.append(part)
                    continue
                value = self.eval(part, scope)
                if _is_unknown(value):
                    return Unknown("template")
                out.append(_to_str(value))
            return "".join(out)
        if kind == "list":
            return [self.eval(n, scope) for n in node[1]]
        if kind == "obj":
            result: dict[str, Any] = {}
            for key_node, value_node in node[1]:
                key = self.eval(key_node, scope)
                if _is_unknown(key):
                    return Unknown("object key")
                result[_to_str(key)] = self.eval(value_node, scope)
            return result
        if kind == "cond":
            cond = self.eval(node[1], scope)
            if _is_unknown(cond):
                return Unknown("condition")
            return self.eval(node[2] if cond else node[3], scope)
        if kind == "not":
            value = self.eval(node[1], scope)
            return value if _is_unknown(value) else not value
        if kind == "neg":
            value = self.eval(node[1], scope)
            return value if _is_unknown(value) else -value
        if kind == "bin":
            return self.binop(node[1], self.eval(node[2], scope), self.eval(node[3], scope))
        if kind == "call":
            return self.call(node[1], [self.eval(a, scope) for a in node[2]])
        if kind == "for":
            return self.for_expr(node, scope)
        if kind == "splat":
            return Unknown("splat")
        if kind in ("var", "attr", "index"):
            return self.reference(node, scope)
        raise EvalError(f"cannot evaluate {kind}")

    @staticmethod
    def binop(op: str, left: Any, right: Any) -> Any:
        if _is_unknown(left) or _is_unknown(right):
            return Unknown(op)
        ops: dict[str, Callable[[Any, Any], Any]] = {
            "==": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            "&&": lambda a, b: bool(a and b),
            "||": lambda a, b: bool(a or b),
            "<": lambda a, b: a < b,
            ">": lambda a, b: a > b,
            "<=": lambda a, b: a <= b,
            ">=": lambda a, b: a >= b,
            "+": lambda a, b: a + b,
            "-": lambda a, b: a - b,
            "*": lambda a, b: a * b,
            "/": lambda a, b: a / b,
            "%": lambda a, b: a % b,
        }
        return ops[op](left, right)

    def call(self, name: str, args: list[Any]) -> Any:
        if any(_is_unknown(a) for a in args) and name not in ("merge", "concat", "try"):
            return Unknown(f"{name}()")
        if name == "toset":
            return list(dict.fromkeys(args[0]))
        if name in ("tolist", "tomap"):
            return args[0]
        if name == "tostring":
            return _to_str(args[0])
        if name == "tonumber":
            return float(args[0]) if "." in str(args[0]) else int(args[0])
        if name == "jsonencode":
            return json.dumps(args[0], separators=(",", ":"))
        if name == "base64encode":
            return base64.b64encode(str(args[0]).encode()).decode()
        if name == "merge":
            merged: dict[str, Any] = {}
            for arg in args:
                if _is_unknown(arg) or not isinstance(arg, dict):
                    return Unknown("merge()")
                merged.update(arg)
            return merged
        if name == "concat":
            if any(_is_unknown(a) for a in args):
                return Unknown("concat()")
            return [x for a in args for x in a]
        if name == "sort":
            return sorted(_to_str(x) for x in args[0])
        if name == "distinct":
            return list(dict.fromkeys(args[0]))
        if name == "flatten":
            return [y for x in args[0] for y in (x if isinstance(x, list) else [x])]
        if name == "compact":
            return [x for x in args[0] if x not in (None, "")]
        if name == "trimsuffix":
            return str(args[0]).removesuffix(args[1])
        if name == "min":
            return min(args)
        if name == "max":
            return max(args)
        if name == "keys":
            return sorted(args[0])
        if name == "values":
            return [args[0][k] for k in sorted(args[0])]
        if name == "lower":
            return str(args[0]).lower()
        if name == "upper":
            return str(args[0]).upper()
        if name == "join":
            return str(args[0]).join(_to_str(x) for x in args[1])
        if name == "format":
            return re.sub(r"%[sdv]", "{}", args[0]).format(*[_to_str(a) for a in args[1:]])
        if name == "lookup":
            return args[0].get(args[1], args[2] if len(args) > 2 else Unknown("lookup()"))
        if name == "try":
            for arg in args:
                if not _is_unknown(arg):
                    return arg
            return Unknown("try()")
        if name == "length":
            return len(args[0])
        if name == "replace":
            return str(args[0]).replace(args[1], args[2])
        if name == "contains":
            return args[1] in args[0]
        if name == "one":
            if len(args[0]) > 1:
                raise EvalError("one() of more than one element")
            return args[0][0] if args[0] else None
        if name == "trimprefix":
            return str(args[0]).removeprefix(args[1])
        return Unknown(f"{name}()")

    def for_expr(self, node: Any, scope: dict[str, Any]) -> Any:
        _, close, names, coll_node, first, second, cond = node
        coll = self.eval(coll_node, scope)
        if _is_unknown(coll):
            return Unknown("for")
        items = list(coll.items()) if isinstance(coll, dict) else list(enumerate(coll))
        out_list: list[Any] = []
        out_obj: dict[str, Any] = {}
        for key, value in items:
            inner = dict(scope)
            if len(names) == 2:
                inner["_for"] = {**scope.get("_for", {}), names[0]: key, names[1]: value}
            else:
                inner["_for"] = {**scope.get("_for", {}), names[0]: value}
            if cond is not None:
                ok = self.eval(cond, inner)
                if _is_unknown(ok):
                    return Unknown("for")
                if not ok:
                    continue
            if close == "]":
                out_list.append(self.eval(first, inner))
            else:
                k = self.eval(first, inner)
                if _is_unknown(k):
                    return Unknown("for")
                out_obj[_to_str(k)] = self.eval(second, inner)
        return out_list if close == "]" else out_obj

    # -- references -----------------------------------------------------------------------

    def reference(self, node: Any, scope: dict[str, Any]) -> Any:
        # Flatten var/attr/index chains into [root, step, step...].
        chain: list[tuple[str, Any]] = []
        while node[0] in ("attr", "index"):
            if node[0] == "attr":
                chain.append(("attr", node[2]))
            else:
                chain.append(("index", node[2]))
            node = node[1]
        if node[0] != "var":
            base = self.eval(node, scope)
            return self._walk(base, list(reversed(chain)), scope)
        root = node[1]
        steps = list(reversed(chain))
        fors = scope.get("_for", {})
        if root in fors:
            return self._walk(fors[root], steps, scope)
        if root == "var":
            name = steps[0][1]
            missing = PROJECT_PLACEHOLDER if name == "project_id" else Unknown(f"var.{name}")
            default = self.variables.get(name, {}).get("default", missing)
            value = self.value(default, {}) if not isinstance(default, Unknown) else default
            return self._walk(value, steps[1:], scope)
        if root == "local":
            return self._walk(self.local(steps[0][1]), steps[1:], scope)
        if root == "each":
            each = scope.get("each")
            if each is None:
                return Unknown("each")
            field = steps[0][1]
            return self._walk(each[field], steps[1:], scope)
        if root == "count":
            return scope.get("count", Unknown("count.index"))
        if root == "path":
            return self.path_module if steps[0][1] in ("module", "root") else Unknown("path")
        if root == "data" and len(steps) >= 3 and steps[0][1] == "google_project":
            # Known only after apply, but a stand-in keeps IAM conditions readable.
            names = {"number": "PROJECT_NUMBER", "project_id": PROJECT_PLACEHOLDER}
            return names.get(steps[2][1], Unknown("data.google_project"))
        if root in ("data", "module", "terraform", "self"):
            return Unknown(root)
        # A resource: TYPE.NAME[key].attr...
        if not steps or steps[0][0] != "attr":
            return Unknown(root)
        rkey = (root, steps[0][1])
        if rkey not in self.resources:
            return Unknown(f"{root}.{steps[0][1]}")
        instances = self.instances(rkey)
        rest = steps[1:]
        if rest and rest[0][0] == "index":
            key = self.eval(rest[0][1], scope)
            if _is_unknown(key):
                return Unknown("resource key")
            instance = instances.get(_to_str(key)) if _to_str(key) in instances else None
            if instance is None and isinstance(key, int | float):
                instance = instances.get(int(key))
            if instance is None:
                raise EvalError(f"{root}.{steps[0][1]}[{key!r}] does not exist")
            rest = rest[1:]
        else:
            if None not in instances:
                # The whole collection: a list (count) or a map (for_each) of instances.
                if all(isinstance(k, int) for k in instances):
                    return self._walk([instances[k] for k in sorted(instances)], rest, scope)
                return self._walk(dict(instances), rest, scope)
            instance = instances[None]
        if not rest:
            return Unknown("resource object")
        attribute = rest[0][1]
        return self._walk(resource_attribute(root, instance, attribute), rest[1:], scope)

    def _walk(self, value: Any, steps: list[tuple[str, Any]], scope: dict[str, Any]) -> Any:
        for kind, step in steps:
            if _is_unknown(value):
                return value
            key = step if kind == "attr" else self.eval(step, scope)
            if _is_unknown(key):
                return Unknown("index")
            try:
                value = value[key] if not isinstance(value, dict) else value[_to_str(key)]
            except (KeyError, IndexError, TypeError):
                return Unknown(f"[{key!r}]")
        return value

    def local(self, name: str) -> Any:
        if name not in self.local_val:
            if name not in self.local_src:
                return Unknown(f"local.{name}")
            self.local_val[name] = Unknown("cycle")
            self.local_val[name] = self.value(self.local_src[name], {})
        return self.local_val[name]

    def instances(self, rkey: tuple[str, str]) -> dict[Any, dict[str, Any]]:
        """Resource instances keyed by for_each key, count index, or None for a single one;
        each with its attributes evaluated."""
        if rkey in self._instances:
            return self._instances[rkey]
        body = self.resources[rkey] if rkey in self.resources else self.modules[rkey[1]]
        self._instances[rkey] = {}
        result = self._expand(body)
        self._instances[rkey] = result
        return result

    def _expand(self, body: dict[str, Any]) -> dict[Any, dict[str, Any]]:
        # Meta-arguments say how Terraform orders and keeps the resource, not what it is.
        meta = ("depends_on", "lifecycle", "provider", "providers")
        attrs = {k: v for k, v in body.items() if not k.startswith("__") and k not in meta}
        if "for_each" in attrs:
            coll = self.value(attrs.pop("for_each"), {})
            if _is_unknown(coll):
                return {}
            pairs = coll.items() if isinstance(coll, dict) else [(x, x) for x in coll]
            return {
                _to_str(k): self.value(attrs, {"each": {"key": k, "value": v}}) for k, v in pairs
            }
        if "count" in attrs:
            count = self.value(attrs.pop("count"), {})
            if _is_unknown(count):
                return {}
            return {i: self.value(attrs, {"count": i}) for i in range(int(count))}
        return {None: self.value(attrs, {})}

    def module_instances(self, name: str) -> dict[Any, dict[str, Any]]:
        return self.instances(("module", name))


def resource_attribute(rtype: str, instance: dict[str, Any], attribute: str) -> Any:
    """Attributes known before apply for the resource types the project uses."""
    if attribute in instance and attribute != "id":
        return instance[attribute]
    if rtype == "google_pubsub_topic" and attribute in ("id", "name"):
        return instance.get("name", Unknown("topic name"))
    if rtype == "google_secret_manager_secret" and attribute in ("id", "name", "secret_id"):
        return instance.get("secret_id", Unknown("secret id"))
    if rtype == "google_service_account" and attribute in ("email", "member", "name", "id"):
        account = instance.get("account_id")
        if _is_unknown(account) or account is None:
            return Unknown("service account")
        email = f"{account}@{PROJECT_PLACEHOLDER}.iam.gserviceaccount.com"
        return f"serviceAccount:{email}" if attribute == "member" else email
    if rtype == "google_storage_bucket" and attribute in ("name", "id"):
        return instance.get("name", Unknown("bucket"))
    if rtype == "google_project_iam_custom_role" and attribute in ("id", "name"):
        role_id = instance.get("role_id")
        return f"projects/{PROJECT_PLACEHOLDER}/roles/{role_id}"
    return Unknown(f"{rtype}.{attribute}")


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    return text


def _single_interpolation(text: str) -> bool:
    """Whether ``text`` is exactly one ``${...}`` (not ``${a}-${b}``)."""
    depth = 0
    in_string = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and i != len(text) - 1:
                return False
        i += 1
    return True


# --------------------------------------------------------------------------- inventory


def _plain(value: Any, unresolved: list[str], where: str) -> Any:
    """JSON-able value; Unknown becomes None and is recorded."""
    if isinstance(value, Unknown):
        unresolved.append(where)
        return None
    if isinstance(value, dict):
        return {k: _plain(v, unresolved, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, unresolved, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _sa_account(email: Any) -> str | None:
    """The account id of a service account email or member string."""
    if not isinstance(email, str):
        return None
    email = email.removeprefix("serviceAccount:")
    return email.split("@", 1)[0] if email.endswith(".iam.gserviceaccount.com") else None


def _first_block(value: Any) -> dict[str, Any]:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return value if isinstance(value, dict) else {}


def inventory(directory: Path) -> dict[str, Any]:
    mod = Module(directory)
    unresolved: list[str] = []
    result: dict[str, Any] = {
        "functions": [],
        "topics": [],
        "scheduler_jobs": [],
        "secrets": [],
        "secret_iam": [],
        "service_accounts": [],
        "project_iam": [],
        "custom_roles": {},
        "log_metrics": [],
        "alert_policies": [],
        "notification_channels": [],
        "outputs": sorted(mod.outputs),
        "output_values": {
            name: _plain(mod.value(body.get("value"), {}), unresolved, f"output.{name}")
            for name, body in sorted(mod.outputs.items())
        },
        "variables": {
            name: {
                "has_default": "default" in body,
                "description": _plain(mod.value(body.get("description", ""), {}), [], name),
            }
            for name, body in sorted(mod.variables.items())
        },
        "unresolved": unresolved,
    }
    for name, body in sorted(mod.modules.items()):
        source = unquote(str(body.get("source", "")))
        if source != FUNCTION_MODULE_SOURCE:
            continue
        for key, inst in mod.module_instances(name).items():
            where = f"module.{name}" + (f"[{json.dumps(key)}]" if key is not None else "")
            source_dir = inst.get("source_dir")
            topic = inst.get("trigger_topic")
            result["functions"].append(
                {
                    "module": name,
                    "key": key,
                    "name": _plain(inst.get("name"), unresolved, f"{where}.name"),
                    "entry_point": _plain(inst.get("entry_point"), unresolved, f"{where}.ep"),
                    "source_dir": os.path.relpath(
                        os.path.normpath(source_dir), directory.resolve().parent
                    )
                    if isinstance(source_dir, str)
                    else _plain(source_dir, unresolved, f"{where}.source_dir"),
                    "trigger": "http" if topic is None else "topic",
                    "trigger_topic": _plain(topic, unresolved, f"{where}.trigger_topic"),
                    "public": bool(inst.get("public", False)),
                    "retry": _plain(inst.get("retry", True), unresolved, f"{where}.retry"),
                    "environment": _plain(
                        inst.get("environment", {}), unresolved, f"{where}.environment"
                    ),
                    "service_account": _sa_account(inst.get("service_account_email")),
                }
            )
    for (rtype, rname), _body in sorted(mod.resources.items()):
        for key, inst in mod.instances((rtype, rname)).items():
            address = f"{rtype}.{rname}" + (f"[{json.dumps(key)}]" if key is not None else "")
            if rtype == "google_pubsub_topic":
                result["topics"].append(
                    {"address": address, "name": _plain(inst.get("name"), unresolved, address)}
                )
            elif rtype == "google_cloud_scheduler_job":
                target = _first_block(inst.get("pubsub_target"))
                http = _first_block(inst.get("http_target"))
                result["scheduler_jobs"].append(
                    {
                        "address": address,
                        "name": _plain(inst.get("name"), unresolved, address),
                        "schedule": _plain(inst.get("schedule"), unresolved, address),
                        "time_zone": _plain(inst.get("time_zone", "Etc/UTC"), unresolved, address),
                        "topic": _plain(target.get("topic_name"), unresolved, address)
                        if target
                        else None,
                        "http_uri": _plain(http.get("uri"), unresolved, address) if http else None,
                    }
                )
            elif rtype == "google_secret_manager_secret":
                result["secrets"].append(
                    {
                        "address": address,
                        "secret_id": _plain(inst.get("secret_id"), unresolved, address),
                        "labels": _plain(inst.get("labels", {}), unresolved, address),
                    }
                )
            elif rtype in (
                "google_secret_manager_secret_iam_member",
                "google_secret_manager_secret_iam_binding",
            ):
                members = inst.get("members") if "members" in inst else [inst.get("member")]
                for member in members if isinstance(members, list) else [members]:
                    result["secret_iam"].append(
                        {
                            "address": address,
                            "secret_id": _plain(inst.get("secret_id"), unresolved, address),
                            "role": _plain(inst.get("role"), unresolved, address),
                            "member": _plain(member, unresolved, address),
                            "service_account": _sa_account(member),
                        }
                    )
            elif rtype == "google_project_iam_member":
                condition = _first_block(inst.get("condition"))
                result["project_iam"].append(
                    {
                        "address": address,
                        "role": _plain(inst.get("role"), unresolved, address),
                        "member": _plain(inst.get("member"), unresolved, address),
                        "service_account": _sa_account(inst.get("member")),
                        "condition": _plain(condition.get("expression"), unresolved, address)
                        if condition
                        else None,
                    }
                )
            elif rtype == "google_project_iam_custom_role":
                role = resource_attribute(rtype, inst, "id")
                result["custom_roles"][str(role)] = _plain(
                    inst.get("permissions", []), unresolved, address
                )
            elif rtype == "google_service_account":
                result["service_accounts"].append(
                    {
                        "address": address,
                        "account_id": _plain(inst.get("account_id"), unresolved, address),
                    }
                )
            elif rtype == "google_logging_metric":
                result["log_metrics"].append(
                    {
                        "address": address,
                        "name": _plain(inst.get("name"), unresolved, address),
                        "filter": _plain(inst.get("filter"), unresolved, address),
                        "value_extractor": _plain(inst.get("value_extractor"), unresolved, address),
                        "label_extractors": _plain(
                            inst.get("label_extractors", {}), unresolved, address
                        ),
                    }
                )
            elif rtype == "google_monitoring_alert_policy":
                doc = _first_block(inst.get("documentation"))
                result["alert_policies"].append(
                    {
                        "address": address,
                        "display_name": _plain(inst.get("display_name"), unresolved, address),
                        "documentation": _plain(doc.get("content"), unresolved, address),
                        "notification_channels": _plain(
                            inst.get("notification_channels", []), unresolved, address
                        ),
                    }
                )
            elif rtype == "google_monitoring_notification_channel":
                result["notification_channels"].append(
                    {"address": address, "type": _plain(inst.get("type"), unresolved, address)}
                )
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: tf_inventory.py <terraform root module directory>", file=sys.stderr)
        return 2
    directory = Path(argv[1])
    if not directory.is_dir():
        print(f"not a directory: {directory}", file=sys.stderr)
        return 2
    print(json.dumps(inventory(directory), indent=2, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
