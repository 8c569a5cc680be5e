"""Compiler baselines: clang -O3 (pinned, from the ziglang wheel) and cross gcc -O3 for Neoverse V2.

Built once per toolchain version, in parallel with a progress bar, and cached on disk under a key
made of the compiler's version and flags, so a new compiler never serves stale assembly.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from . import tools
from .cache import texts
from .errors import InfraError
from .kernels.model import Variant
from .settings import Settings

COMPILERS = ("clang", "gcc")
OPT_LEVELS = ("-O0", "-O1", "-O2", "-O3")
SYSROOT_INCLUDE = f"/usr/{tools.TRIPLE}/include"


@dataclass(frozen=True)
class Baseline:
    variant_id: str
    compiler: str
    opt: str
    toolchain: str  # compiler version string
    flags: tuple[str, ...]
    assembly: str


def compile_argv(compiler: str, opt: str, source: Path, output: Path) -> list[str]:
    common = [opt, *tools.COMMON_CFLAGS, "-S", "-o", str(output), str(source)]
    if compiler == "clang":
        return [tools.tool("clang").path, "clang", *tools.CLANG_FLAGS, "-isystem",
                SYSROOT_INCLUDE, *common]
    if compiler == "gcc":
        return [tools.tool("gcc").path, *tools.GCC_FLAGS, *common]
    raise ValueError(f"unknown compiler {compiler!r}; choose from {COMPILERS}")


def flags(compiler: str, opt: str) -> tuple[str, ...]:
    """The recorded command line, without paths."""
    argv = compile_argv(compiler, opt, Path("kernel.c"), Path("kernel.s"))
    return tuple(a for a in argv[1:] if not a.startswith("/") and a != "clang")


def toolchain_key(compiler: str, opt: str) -> str:
    return tools.fingerprint(tools.tool(compiler).version, *flags(compiler, opt))[:12]


def cache_path(variant_id: str, compiler: str, opt: str, settings: Settings) -> Path:
    return (settings.cache_dir / "baselines" / f"{compiler}{opt}-{toolchain_key(compiler, opt)}"
            / f"{variant_id}.s")


def compile_variant(variant: Variant, compiler: str, opt: str = "-O3") -> str:
    with tempfile.TemporaryDirectory(prefix="armgym-cc-") as tmp:
        src, out = Path(tmp, f"{variant.id}.c"), Path(tmp, f"{variant.id}.s")
        src.write_text(variant.c_source)
        proc = subprocess.run(compile_argv(compiler, opt, src, out), capture_output=True,
                              text=True, timeout=300, cwd=tmp, check=False)
        if proc.returncode != 0:
            raise InfraError(f"{compiler} {opt} failed on {variant.id}: {proc.stderr[-1500:]}")
        return out.read_text()


_TEXTS = texts(0)  # the files only: compiler output is read once per verification at most


def get(variant: Variant, compiler: str = "clang", opt: str = "-O3", *,
        settings: Settings) -> Baseline:
    """The cached baseline, compiled now if this toolchain has not built it yet."""
    path = cache_path(variant.id, compiler, opt, settings)
    text = _TEXTS.get(path)
    if text is None:
        text = compile_variant(variant, compiler, opt)
        _TEXTS.put(path, text)
    return Baseline(variant.id, compiler, opt, tools.tool(compiler).version,
                    flags(compiler, opt), text)


def build(
    variants: Sequence[Variant],
    compilers: Iterable[str] = COMPILERS,
    opts: Iterable[str] = ("-O3",),
    jobs: int | None = None,
    progress: bool = True,
    *,
    settings: Settings,
) -> dict[str, int]:
    """Build every missing baseline; return how many were built and how many were cached."""
    work = [(v, c, o) for c in compilers for o in opts for v in variants]
    todo = [w for w in work if not cache_path(w[0].id, w[1], w[2], settings).exists()]
    with ThreadPoolExecutor(max_workers=jobs or settings.jobs) as pool, tqdm(
        total=len(todo), desc="baselines", unit="kernel", disable=not progress or not todo
    ) as bar:
        for _ in pool.map(lambda w: get(w[0], w[1], w[2], settings=settings), todo):
            bar.update()
    return {"built": len(todo), "cached": len(work) - len(todo), "total": len(work)}
