"""The arrow goes one way: ``qubes.vm`` never imports libvirt, liblxc or
a concrete backend driver; it may import the Backend protocol's types.

Each module is parsed, not imported, so that an import hidden in a
function body counts too.
"""

import ast
import pathlib

import pytest

import qubes.vm

VM_DIR = pathlib.Path(qubes.vm.__file__).parent
PACKAGE_ROOT = VM_DIR.parent.parent

FORBIDDEN = (
    "libvirt",
    "lxc",
    "qubes.backends.xen",
    "qubes.backends.kvm",
    "qubes.backends.lxc",
)
IMPORT_FUNCTIONS = {"import_module", "__import__"}


def _is_forbidden(module):
    return any(
        module == name or module.startswith(name + ".") for name in FORBIDDEN
    )


def _absolute(module, level, package):
    """The absolute name of ``from <level dots><module> import``."""
    if not level:
        return module or ""
    parts = package.split(".")
    base = parts[: len(parts) - level + 1]
    return ".".join([*base, module] if module else base)


def imported_modules(source, package):
    """Every module that *source* (a module of *package*) imports: import
    statements, ``from`` imports (each imported name as a possible
    submodule) and import_module/__import__ calls with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            found.append(base)
            found.extend(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call):
            func = node.func
            name = getattr(func, "attr", None) or getattr(func, "id", None)
            args = node.args
            literal = args and isinstance(args[0], ast.Constant)
            if name in IMPORT_FUNCTIONS and literal:
                found.append(str(args[0].value))
    return found


def forbidden_imports(source, package="qubes.vm"):
    return [m for m in imported_modules(source, package) if _is_forbidden(m)]


def _vm_modules():
    return sorted(VM_DIR.rglob("*.py"))


def _package_of(path):
    relative = path.relative_to(PACKAGE_ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    else:
        parts = parts[:-1]
    return ".".join(parts)


# -- the checker catches what it must ----------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import libvirt",
        "import libvirt as lv",
        "import lxc",
        "from libvirt import virConnect",
        "import qubes.backends.xen",
        "import qubes.backends.kvm.driver",
        "from qubes.backends.lxc import LXCBackend",
        "from qubes.backends import xen",
        "from qubes.backends import kvm, spec",
        "from ..backends import lxc",
        "from ..backends.xen import _xml",
        "def f():\n    import libvirt\n",
        "import importlib\nimportlib.import_module('libvirt')",
        "__import__('qubes.backends.kvm')",
    ],
)
def test_checker_finds_a_forbidden_import(source):
    assert forbidden_imports(source)


@pytest.mark.parametrize(
    "source",
    [
        "import lxml.etree",
        "from qubes.backends import spec",
        "from qubes.backends.spec import Backend",
        "import qubes.backends",
        "from qubes import exc",
        "from . import volumes",
        "import libvirtish",
        "import qubes.backends.xenial",
    ],
)
def test_checker_allows_other_imports(source):
    assert forbidden_imports(source) == []


def test_relative_imports_resolve_from_the_package():
    assert _absolute("net", 1, "qubes.vm.mix") == "qubes.vm.mix.net"
    assert _absolute("backends", 2, "qubes.vm") == "qubes.backends"
    assert _absolute(None, 1, "qubes.vm") == "qubes.vm"


# -- the rule holds ----------------------------------------------------------


def test_the_vm_package_is_found():
    names = {path.name for path in _vm_modules()}
    assert {"__init__.py", "qubesvm.py", "appvm.py", "net.py"} <= names


@pytest.mark.parametrize(
    "path",
    _vm_modules(),
    ids=lambda path: str(path.relative_to(VM_DIR)),
)
def test_vm_module_imports_no_hypervisor_library_nor_driver(path):
    source = path.read_text(encoding="utf-8")
    assert forbidden_imports(source, _package_of(path)) == []
