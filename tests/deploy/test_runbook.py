"""docs/runbooks: every command in every ```bash block works against this project.

- `spikeformer ...` names a command of the typer app (and only options that command has), or one listed in PENDING;
- every repository path a command names exists (or is in PENDING);
- `kubectl` uses the namespace spikeformer and the real names of deploy/k8s (Deployments, the StatefulSet's pods,
  Services, the Ingress, label selectors that match pod labels);
- Alertmanager is reached through its v2 API only (`/api/v1` was removed in 0.27).
"""

from __future__ import annotations

import re
import shlex
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer.main

from deploy.deploy_support import K8S, ROOT, RUNBOOKS, cli_tree, load_yaml_documents

# Commands and files the runbooks name that another engineer is writing right now. The test passes while they are
# missing; remove an entry as soon as it lands (test_pending_entries_are_still_missing fails as a reminder).
# Entries: a command path after `spikeformer` ("incident", "db long-queries") or a repository path.
PENDING: set[str] = set()

REPO_DIRS = ("deploy/", "docs/", "scripts/", "src/", "tests/", "migrations/")
REPO_PATH = re.compile(r"(?<![\w/.$:-])((?:deploy|docs|scripts|src|tests|migrations)/[\w./-]*)")
NAMESPACE = "spikeformer"
# kubectl commands on cluster-scoped things (no namespace applies).
CLUSTER_SCOPED = {("top", "nodes"), ("top", "node"), ("get", "nodes"), ("describe", "node"), ("describe", "nodes")}
KUBECTL_VALUE_FLAGS = {
    "-n", "--namespace", "-l", "--selector", "-o", "--output", "-p", "--patch", "-c", "--container", "-f",
    "--filename", "-k", "--kustomize", "--sort-by", "--since", "--tail", "--replicas", "--type", "--field-selector",
    "--timeout", "--to-revision",
}  # fmt: skip
KIND_ALIASES = {
    "deployment": {"deployment", "deployments", "deploy"},
    "statefulset": {"statefulset", "statefulsets", "sts"},
    "service": {"service", "services", "svc"},
    "ingress": {"ingress", "ingresses", "ing"},
    "horizontalpodautoscaler": {"horizontalpodautoscaler", "horizontalpodautoscalers", "hpa"},
    "poddisruptionbudget": {"poddisruptionbudget", "poddisruptionbudgets", "pdb"},
    "configmap": {"configmap", "configmaps", "cm"},
    "secret": {"secret", "secrets"},
    "job": {"job", "jobs"},
    "persistentvolumeclaim": {"persistentvolumeclaim", "persistentvolumeclaims", "pvc"},
    "networkpolicy": {"networkpolicy", "networkpolicies", "netpol"},
    "pod": {"pod", "pods", "po"},
    "endpoints": {"endpoints", "ep"},
}
SHELL_KEYWORDS = {"do", "then", "else", "time", "!", "{", "}", "(", ")", "done", "fi"}


# ------------------------------------------------------------------------------------------------ extraction


def bash_blocks(path: Path) -> list[str]:
    """The contents of the ```bash fences of a page (also those indented inside list items)."""
    text = path.read_text(encoding="utf-8")
    return [textwrap.dedent(m.group(2)) for m in re.finditer(r"^([ \t]*)```bash\n(.*?)^\1```", text, re.S | re.M)]


def logical_lines(block: str) -> list[str]:
    """Lines of a block with backslash continuations joined; comment-only and empty lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def split_commands(line: str) -> list[str]:
    """The simple commands of a shell line: split at | & ; outside quotes; each $(...) is a command of its own
    (replaced by the word SUBST in the command around it)."""
    commands: list[str] = []

    def scan(i: int, in_subst: bool) -> int:
        segments, current, quote = [], [], None
        while i < len(line):
            c = line[i]
            if quote == "'":
                quote = None if c == "'" else quote
                current.append(c)
                i += 1
            elif c == "\\" and i + 1 < len(line):
                current.append(line[i : i + 2])
                i += 2
            elif line.startswith("$(", i):
                i = scan(i + 2, True)
                current.append("SUBST")
            elif quote == '"':
                quote = None if c == '"' else quote
                current.append(c)
                i += 1
            elif c in "'\"":
                quote = c
                current.append(c)
                i += 1
            elif c == ")" and in_subst:
                i += 1
                break
            elif c in "|&;":
                segments.append("".join(current))
                current = []
                i += 1
            else:
                current.append(c)
                i += 1
        segments.append("".join(current))
        commands.extend(s.strip() for s in segments if s.strip())
        return i

    scan(0, False)
    return commands


def words(command: str) -> list[str]:
    """Tokens of a simple command, without leading VAR=value assignments and shell keywords."""
    tokens = shlex.split(command, comments=True)
    while tokens and (re.match(r"^[A-Za-z_]\w*=", tokens[0]) or tokens[0] in SHELL_KEYWORDS):
        tokens = tokens[1:]
    return tokens


@cache
def all_commands() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``(where, tokens)`` of every simple command in every runbook page, commands run by `kubectl exec` included."""
    out = []
    for path in sorted(RUNBOOKS.glob("*.md")):
        for block in bash_blocks(path):
            for line in logical_lines(block):
                for command in split_commands(line):
                    tokens = words(command)
                    if not tokens:
                        continue
                    where = f"{path.name}: {command}"
                    out.append((where, tuple(tokens)))
                    if tokens[0] == "kubectl" and "exec" in tokens and "--" in tokens:
                        inner = tokens[tokens.index("--") + 1 :]
                        if inner:
                            out.append((where, tuple(inner)))
    return tuple(out)


def commands_of(program: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(w, t) for w, t in all_commands() if Path(t[0]).name == program]


# ------------------------------------------------------------------------------------------------ the CLI


@cache
def click_root() -> Any:
    from spikeformer.cli import app

    return typer.main.get_command(app)


def resolve_cli(args: tuple[str, ...]) -> tuple[str, Any | None]:
    """``("db long-queries", click command)`` for the words after `spikeformer`; the command is None when the path
    does not exist. Walks the typer app (registered commands and groups) for the names."""
    node: dict | None = cli_tree()
    click_cmd = click_root()
    path: list[str] = []
    for word in args:
        if word.startswith("-") or node is None:
            break
        path.append(word)
        if word not in node:
            return " ".join(path), None
        node = node[word]
        click_cmd = click_cmd.commands[word]
    return " ".join(path), click_cmd


def is_pending(path: str) -> bool:
    return any(path == p or path.startswith(p + " ") for p in PENDING)


def options_of(click_cmd: Any) -> set[str]:
    return {opt for p in click_cmd.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"}


def test_runbooks_exist_with_bash_blocks() -> None:
    pages = sorted(RUNBOOKS.glob("*.md"))
    assert (RUNBOOKS / "incident-response.md") in pages
    for page in pages:
        assert bash_blocks(page), f"{page.name} has no ```bash block"
    assert len(all_commands()) > 50


def test_extraction_handles_quotes_pipes_and_substitutions() -> None:
    line = """A=$(kubectl -n x get secret s -o jsonpath='{.data.k}' | base64 -d); psql -c "SELECT count(*) FROM t;" """
    assert split_commands(line) == [
        "kubectl -n x get secret s -o jsonpath='{.data.k}'",
        "base64 -d",
        "A=SUBST",
        'psql -c "SELECT count(*) FROM t;"',
    ]
    assert words("FOO=1 spikeformer doctor --json # note") == ["spikeformer", "doctor", "--json"]


@pytest.mark.parametrize("where,tokens", commands_of("spikeformer"), ids=lambda v: v if isinstance(v, str) else "")
def test_spikeformer_commands_exist(where: str, tokens: tuple[str, ...]) -> None:
    path, click_cmd = resolve_cli(tokens[1:])
    assert path, f"{where}: `spikeformer` without a command"
    if is_pending(path):
        return
    assert click_cmd is not None, f"{where}: `spikeformer {path}` is not a command of spikeformer.cli.app"
    assert not hasattr(click_cmd, "commands"), f"{where}: `spikeformer {path}` is a group; name its command"
    for token in tokens:
        if token.startswith("--"):
            option = token.split("=", 1)[0]
            assert option in options_of(click_cmd), f"{where}: `spikeformer {path}` has no option {option}"


def test_pending_entries_are_still_missing() -> None:
    for entry in PENDING:
        if entry.startswith(REPO_DIRS):
            assert not (ROOT / entry).exists(), f"{entry} exists now: remove it from PENDING"
        else:
            _, click_cmd = resolve_cli(tuple(entry.split()))
            assert click_cmd is None, f"`spikeformer {entry}` exists now: remove it from PENDING"


def path_tokens(tokens: tuple[str, ...]) -> list[str]:
    """Tokens that may name repository files. In kubectl commands only -k/-f values do (`deploy/x` is a Deployment)."""
    if Path(tokens[0]).name != "kubectl":
        return list(tokens)
    out = [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t in ("-k", "-f", "--kustomize", "--filename")]
    return out + [t.split("=", 1)[1] for t in tokens if t.startswith(("--kustomize=", "--filename="))]


def test_repository_paths_exist() -> None:
    for where, tokens in all_commands():
        for token in path_tokens(tokens):
            for candidate in REPO_PATH.findall(token):
                candidate = candidate.rstrip("/.")
                if candidate in PENDING:
                    continue
                assert (ROOT / candidate).exists(), f"{where}: {candidate} does not exist in the repository"


# ------------------------------------------------------------------------------------------------ kubectl


@cache
def k8s_objects() -> tuple[dict[str, Any], ...]:
    return tuple(doc for p in sorted((K8S / "base").glob("*.yaml")) for doc in load_yaml_documents(p))


@cache
def resource_names() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {kind: set() for kind in KIND_ALIASES}
    for o in k8s_objects():
        kind = o["kind"].lower()
        if kind in names:
            names[kind].add(o["metadata"]["name"])
        if o["kind"] == "Service":
            names["endpoints"].add(o["metadata"]["name"])  # a Service's Endpoints carry its name
        if o["kind"] == "StatefulSet":
            names["pod"] |= {f"{o['metadata']['name']}-{i}" for i in range(o["spec"].get("replicas", 1))}
    return names


def canonical_kind(word: str) -> str | None:
    for kind, aliases in KIND_ALIASES.items():
        if word.lower() in aliases:
            return kind
    return None


def pod_labels() -> list[dict[str, str]]:
    return [
        o["spec"]["template"]["metadata"]["labels"]
        for o in k8s_objects()
        if o["kind"] in ("Deployment", "StatefulSet", "Job")
    ]


def kubectl_positionals(tokens: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for token in tokens[1:]:
        if token == "--":
            break
        if skip:
            skip = False
            continue
        if token.startswith("-"):
            skip = token in KUBECTL_VALUE_FLAGS
            continue
        out.append(token)
    return out


def check_reference(where: str, kind: str | None, name: str) -> None:
    if name.startswith("$") or name == "SUBST":
        return  # a shell variable, e.g. the pods of a for loop
    assert kind is not None, f"{where}: unknown resource kind in {name!r}"
    assert name in resource_names()[kind], f"{where}: no {kind} named {name!r} in deploy/k8s/base"


@pytest.mark.parametrize("where,tokens", commands_of("kubectl"), ids=lambda v: v if isinstance(v, str) else "")
def test_kubectl_commands_use_the_namespace_and_real_names(where: str, tokens: tuple[str, ...]) -> None:
    positionals = kubectl_positionals(tokens)
    assert positionals, f"{where}: kubectl without a verb"
    verb = positionals[0]
    if tuple(positionals[:2]) not in CLUSTER_SCOPED:
        namespaces = [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t in ("-n", "--namespace")]
        namespaces += [t.split("=", 1)[1] for t in tokens if t.startswith("--namespace=")]
        assert namespaces == [NAMESPACE], f"{where}: give the namespace: kubectl -n {NAMESPACE} ..."
    args = positionals[1:]
    for arg in args:
        if "/" in arg and "://" not in arg:  # kind/name (files come with -k/-f, whose values are not positional)
            kind, _, name = arg.partition("/")
            check_reference(where, canonical_kind(kind), name)
    if verb in ("get", "describe", "patch", "delete", "edit", "scale", "label", "annotate") and len(args) >= 2:
        if "/" not in args[0] and "," not in args[0]:
            check_reference(where, canonical_kind(args[0]), args[1])
    if verb in ("exec", "logs", "port-forward", "attach", "cp") and args and "/" not in args[0]:
        check_reference(where, "pod", args[0])
    for i, token in enumerate(tokens[:-1]):
        if token in ("-l", "--selector"):
            for pair in tokens[i + 1].split(","):
                key, _, value = pair.partition("=")
                assert any(labels.get(key) == value for labels in pod_labels()), f"{where}: no pod has {pair}"


def test_the_runbook_uses_the_real_deployment_names() -> None:
    text = "\n".join(" ".join(t) for _, t in commands_of("kubectl"))
    for needed in (
        "rollout restart deployment/spikeformer-api",
        "rollout undo deployment/spikeformer-api",
        "rollout restart deployment/pgbouncer",
        "patch ingress spikeformer-ingress",
    ):
        assert needed in text, needed
    assert "model-inference" not in text


# ------------------------------------------------------------------------------------------------ Alertmanager


def test_no_command_uses_the_removed_alertmanager_v1_api() -> None:
    for where, tokens in all_commands():
        assert not any("/api/v1/" in t or t.endswith("/api/v1") for t in tokens), f"{where}: /api/v1 is gone (0.27)"


def test_silences_use_the_v2_api() -> None:
    curls = [(w, t) for w, t in commands_of("curl") if any("silences" in x for x in t)]
    assert curls, "the runbook must show the silence call with curl"
    for where, tokens in curls:
        assert any(x.endswith("/api/v2/silences") for x in tokens), where
        assert "POST" in tokens, where
        body = tokens[tokens.index("-d") + 1]
        for field in ('"matchers"', '"startsAt"', '"endsAt"', '"createdBy"', '"comment"', '"isEqual"'):
            assert field in body, (where, field)
    amtool = [t for _, t in commands_of("amtool") if "silence" in t]
    assert any("add" in t for t in amtool), "the runbook must show `amtool silence add`"
