"""The package's layers: every module imports, and the import graph between the subpackages and the
top-level modules of vsreid_jax has no cycle (imports inside functions count: a lazy import is a
dependency too), so each layer can be read, tested and changed from the bottom up."""
import ast
import importlib
import pathlib
import pkgutil

import vsreid_jax

PACKAGE = pathlib.Path(vsreid_jax.__file__).resolve().parent
# Modules at the bottom: nothing of the package below them.
BOTTOM = ("errors", "geometry")


def _unit(module: str):
  """The graph node of a module name "vsreid_jax.a.b": its subpackage "a" or top-level module "a"."""
  parts = module.split(".")
  if parts[0] != "vsreid_jax" or len(parts) < 2:
    return None
  return parts[1]


def _imported(tree: ast.AST, module: str):
  """Every module name an AST imports (relative imports resolved against `module`)."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(module.split(".")[:-node.level] + ([base] if base else []))
      yield base
      yield from (f"{base}.{a.name}" for a in node.names)  # `from vsreid_jax import flow`


def import_graph():
  """{unit: {unit it imports: [importing module, ...]}} over vsreid_jax's source files."""
  graph = {}
  for path in sorted(PACKAGE.rglob("*.py")):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
    src = _unit(module)
    if src is None or src in ("__init__", "__main__"):
      continue
    edges = graph.setdefault(src, {})
    for name in _imported(ast.parse(path.read_text(), str(path)), module):
      dst = _unit(name)
      if dst is not None and dst != src and dst not in ("__init__", "__main__") and (
          (PACKAGE / dst).is_dir() or (PACKAGE / f"{dst}.py").is_file()):
        edges.setdefault(dst, []).append(module)
  return graph


def find_cycle(graph):
  """One cycle [a, b, ..., a] of the graph, or None."""
  state = {}

  def visit(node, path):
    state[node] = "open"
    for nxt in sorted(graph.get(node, {})):
      if state.get(nxt) == "open":
        return path[path.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt, path + [nxt])
        if found:
          return found
    state[node] = "done"
    return None

  for start in sorted(graph):
    if start not in state:
      found = visit(start, [start])
      if found:
        return found
  return None


def test_every_module_imports():
  failed = {}
  for info in pkgutil.walk_packages([str(PACKAGE)], "vsreid_jax."):
    if info.name.endswith("__main__"):
      continue
    try:
      importlib.import_module(info.name)
    except Exception as e:  # pylint: disable=broad-except
      failed[info.name] = f"{type(e).__name__}: {e}"
  assert not failed


def test_package_import_graph_has_no_cycle():
  graph = import_graph()
  assert {"data", "flow", "configs", "train", "solver", "api", "geometry"} <= set(graph)
  cycle = find_cycle(graph)
  assert cycle is None, " -> ".join(
      f"{a} ({', '.join(sorted(set(graph[a][b])))})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_bottom_modules_import_nothing_of_the_package():
  graph = import_graph()
  for unit in BOTTOM:
    assert not graph.get(unit), (unit, graph.get(unit))


def test_the_checker_finds_a_cycle():
  assert find_cycle({"a": {"b": ["m"]}, "b": {"c": ["m"]}, "c": {"a": ["m"]}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b": ["m"]}, "b": {}, "c": {"a": ["m"]}}) is None
