"""Real-TeX rendering: many formulas per `latex` run (one DVI page each), then one `dvipng` pass.

Each formula becomes `\\ts{index}{size}{formula}`, which logs `<ts:begin:i>` / `<ts:end:i>` markers and
ships out exactly one page holding `$\\displaystyle formula$` (or `\\textstyle`) in an `\\hbox`. TeX runs in batch mode and
recovers from errors, so one bad formula costs one page: errors between a formula's markers are
classified (`FAILURE_CAUSES`) and only that page is dropped. When the run's structure breaks (a fatal
error, a timeout, pages missing), the batch is split in halves and retried until the culprit is alone.
`dvipng -T tight` crops every page to its ink (one pass per dpi). Sizes, dpi and math style vary per
formula, so one font is one document. Output: uint8 (H, W) "paper" images, ink dark on white.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from texscribe.images import DEFAULT_MAX_PIXELS
from texscribe.latex import tokenize
from texscribe.render.style import RenderFailure


@dataclass(frozen=True)
class TexFont:
    """Preamble lines for one font family, the switch written before each formula, and the files it needs.

    `preamble` goes after `\\documentclass`; `fix-cm` (scalable Computer Modern, so any `\\fontsize`
    works without "size substituted" fallbacks) must come before it, hence `fix_cm`.
    """

    preamble: str
    switch: str
    files: tuple[str, ...]
    fix_cm: bool = False


_AMS = "\\usepackage{amsmath,amssymb}\n\\usepackage{mathrsfs}\n"
# Commands school formulas use whose packages (yhmath, stmaryrd) are not in the small TeX install:
# drawn the way those packages draw them; `\\providecommand` leaves a font's own definition alone.
FALLBACK_COMMANDS = (
    "\\providecommand{\\overparen}[1]{\\overset{\\frown}{#1}}\n"
    "\\providecommand{\\underparen}[1]{\\underset{\\smile}{#1}}\n"
    "\\providecommand{\\Perp}{\\mathrel{\\perp\\mkern-10mu\\perp}}\n"
    "\\providecommand{\\llbracket}{[\\mkern-3mu[}\n"
    "\\providecommand{\\rrbracket}{]\\mkern-3mu]}\n"
)
TEX_FONTS: dict[str, TexFont] = {
    "cm": TexFont(_AMS, "", ("fix-cm.sty", "amssymb.sty", "mathrsfs.sty"), fix_cm=True),
    "lm": TexFont(_AMS + "\\usepackage{lmodern}\n", "", ("lmodern.sty", "amssymb.sty", "mathrsfs.sty")),
    # txfonts/pxfonts bring their own AMS symbols: loading amssymb too would redefine them
    "times": TexFont(
        "\\usepackage{amsmath}\n\\usepackage{txfonts}\n\\usepackage{mathrsfs}\n",
        "",
        ("txfonts.sty", "mathrsfs.sty"),
    ),
    "palatino": TexFont(
        "\\usepackage{amsmath}\n\\usepackage{pxfonts}\n\\usepackage{mathrsfs}\n",
        "",
        ("pxfonts.sty", "mathrsfs.sty"),
    ),
    "sans": TexFont(
        _AMS + "\\usepackage{sansmath}\n",
        "\\sansmath\\sffamily",
        ("fix-cm.sty", "sansmath.sty", "amssymb.sty", "mathrsfs.sty"),
        fix_cm=True,
    ),
}


# Commands a formula may not contain: they define macros, read or write files, stop the job, or change how
# TeX reads the rest of the document (conditionals skip text), so one formula could break every formula
# after it (or touch the disk). Anything else goes to TeX, whose errors are classified per formula.
def _words(text: str) -> list[str]:
    return text.split()


UNSAFE_COMMANDS = frozenset(
    "\\" + name
    for name in _words(
        """def edef gdef xdef let futurelet newcommand renewcommand providecommand newenvironment
    renewenvironment DeclareMathOperator input include InputIfFileExists openin openout read write immediate
    closein closeout special catcode lccode uccode mathcode delcode sfcode csname endcsname expandafter
    noexpand uppercase lowercase shipout end endinput documentclass usepackage RequirePackage batchmode
    errorstopmode scrollmode nonstopmode output everypar everymath everydisplay everyhbox everyvbox
    everycr everyjob afterassignment aftergroup jobname dump newwrite newread par typeout message errmessage
    errhelp loop repeat iterate makeatletter makeatother setbox global long outer protected pdfprimitive
    directlua write18 ShellEscape pdfshellescape newpage clearpage pagebreak ts
    tracingonline tracingmacros showbox showlists show showthe stop bye if ifx ifnum ifdim ifcase
    iftrue iffalse ifmmode ifvmode ifhmode ifcat ifodd ifdefined ifcsname unless fi else or"""
    )
)
_ENV_RE = re.compile(r"\\(begin|end)\{([^}]*)\}")
_MARKER_RE = re.compile(r"<ts:(begin|end):(\d+)>")
_PAGES_RE = re.compile(r"Output written on .*?\((\d+) pages?")
_TRAILING_CS = re.compile(r"(\\[A-Za-z@]+\*?|\\.)\s*$")
_TEX_ENV = {
    "openout_any": "p",  # paranoid: TeX writes only below its working folder
    "openin_any": "p",
    "shell_escape": "f",
    "max_print_line": "10000",  # no wrapped log lines: markers and messages stay whole
    "error_line": "254",
    "half_error_line": "238",
}
_ERROR_CAUSES: list[tuple[str, str]] = [
    ("Undefined control sequence", "undefined_control_sequence"),
    (r"LaTeX Error: Environment .* undefined", "undefined_environment"),
    (r"LaTeX Error: File `.*' not found", "missing_package"),
    (r"LaTeX Error: \\begin\{.*\} on input line .* ended by", "unbalanced_environment"),
    (r"Unicode character|inputenc Error|Invalid UTF-8", "unicode_character"),
    (r"Missing character", "missing_glyph"),
    (r"Double (super|sub)script", "double_script"),
    (r"Misplaced alignment tab|Extra alignment tab|Misplaced \\cr|Misplaced \\noalign|"
     r"There's no line here to end", "alignment"),
    (r"Missing \$ inserted|Display math should end|Bad math environment delimiter|"
     r"You can't use .* in (math|restricted horizontal) mode|command is invalid in math mode|"
     r"Missing \\endcsname|Command .* invalid in math mode", "math_mode"),
    (r"Missing [{}] inserted|Extra \}|Extra \\right|Extra \\else|Missing \\right|Argument of .* has an extra|"
     r"Runaway argument|Paragraph ended before|Missing delimiter|Extra \\endgroup|Too many }'s|"
     r"Limit controls must follow", "braces_or_arguments"),
    (r"Missing number|Illegal unit|Number too big|Dimension too large|Arithmetic overflow", "bad_number"),
    (r"TeX capacity exceeded", "capacity_exceeded"),
    (r"Emergency stop|Fatal error|job aborted", "fatal_error"),
]  # fmt: skip


def tex_missing() -> str | None:
    """Why real-TeX rendering is impossible here (`None` when `latex` and `dvipng` are on PATH)."""
    missing = [tool for tool in ("latex", "dvipng", "kpsewhich") if shutil.which(tool) is None]
    if missing:
        return (
            f"{', '.join(missing)} not found on PATH; install TeX (scripts/setup.sh does it on Debian: "
            "texlive-latex-base texlive-latex-recommended texlive-fonts-recommended lmodern dvipng)"
        )
    return None


@lru_cache(maxsize=1)
def tex_font_status() -> dict[str, str | None]:
    """Font family -> `None` when its packages are installed, else the reason it cannot be used."""
    reason = tex_missing()
    if reason:
        return dict.fromkeys(TEX_FONTS, reason)
    files = sorted({f for font in TEX_FONTS.values() for f in font.files})
    proc = subprocess.run(["kpsewhich", *files], capture_output=True, text=True, timeout=60)
    found = {Path(line.strip()).name for line in proc.stdout.splitlines() if line.strip()}
    status: dict[str, str | None] = {}
    for name, font in TEX_FONTS.items():
        absent = [f for f in font.files if f not in found]
        status[name] = f"TeX package file(s) {', '.join(absent)} not installed" if absent else None
    return status


def check_formula(latex: str) -> RenderFailure | None:
    """Reject, before TeX sees it, a formula that could break the batch document (see `UNSAFE_COMMANDS`)."""
    if "\n" in latex or "\r" in latex or "%" in latex.replace("\\%", ""):
        return RenderFailure("unsafe_command", "line break or raw % in the formula")
    tokens = tokenize(latex)
    unsafe = sorted({t for t in tokens if t in UNSAFE_COMMANDS or t.startswith("\\pdf")})
    if unsafe:
        return RenderFailure("unsafe_command", f"{', '.join(unsafe)} is not allowed in a formula")
    if any(t in ("#", "\\begin{document}", "\\end{document}") for t in tokens):
        return RenderFailure("unsafe_command", "macro parameter # or a document environment")
    stack: list[str] = []
    for kind, name in _ENV_RE.findall("".join(t for t in tokens if t.startswith(("\\begin", "\\end")))):
        if kind == "begin":
            stack.append(name)
        elif not stack or stack.pop() != name:
            return RenderFailure(
                "unbalanced_environment", f"\\end{{{name}}} does not close the open environment"
            )
    if stack:
        return RenderFailure("unbalanced_environment", f"\\begin{{{stack[-1]}}} is never closed")
    return None


class TexItem(NamedTuple):
    """One formula to typeset: LaTeX source, font size in TeX points, resolution, display or text style."""

    latex: str
    size: float = 10.0
    dpi: int = 200
    display: bool = True


def render_tex_batch(
    items: Sequence[TexItem],
    font: str,
    *,
    timeout: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[np.ndarray | RenderFailure]:
    """Render `items` in one font with one `latex` run; one uint8 (H, W) image (ink dark) or failure each.

    Sizes and math styles vary per page; each distinct dpi is one `dvipng` pass over its pages.
    `timeout` bounds each `latex` run (default 20 s + 0.5 s per formula).
    """
    if font not in TEX_FONTS:
        raise ValueError(f"unknown TeX font {font!r}; choose from {', '.join(TEX_FONTS)}")
    results: list[np.ndarray | RenderFailure | None] = [check_formula(item.latex) for item in items]
    todo = [i for i, r in enumerate(results) if r is None]
    with tempfile.TemporaryDirectory(prefix="texscribe-tex-") as tmp:
        job = _Job(Path(tmp), TEX_FONTS[font], timeout, max_pixels)
        for i, outcome in zip(todo, job.render([items[i] for i in todo])):
            results[i] = outcome
    return results  # type: ignore[return-value]


@dataclass
class _Job:
    """One batch's working folder and settings; `render` splits and retries when a run breaks."""

    folder: Path
    font: TexFont
    timeout: float | None
    max_pixels: int
    runs: int = 0

    def render(self, items: list[TexItem]) -> list[np.ndarray | RenderFailure]:
        if not items:
            return []
        self.runs += 1
        stem = f"b{self.runs}"
        (self.folder / f"{stem}.tex").write_text(self.document(items), encoding="utf-8")
        limit = self.timeout if self.timeout is not None else 20.0 + 0.5 * len(items)
        try:
            subprocess.run(
                ["latex", "-interaction=batchmode", "-no-shell-escape", f"{stem}.tex"],
                cwd=self.folder,
                env={**os.environ, **_TEX_ENV},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=limit,
            )
        except subprocess.TimeoutExpired:
            if len(items) == 1:
                return [RenderFailure("timeout", f"latex ran longer than {limit:.0f} s")]
            return self.split(items)
        log = _read(self.folder / f"{stem}.log")
        errors, intact = parse_log(log, len(items))
        if not intact:
            if len(items) == 1:
                return [errors.get(0) or RenderFailure("fatal_error", _last_error(log) or "no page written")]
            return self.split(items)
        pages = self.dvipng(stem, items, errors)
        if isinstance(pages, RenderFailure):
            return [pages] if len(items) == 1 else self.split(items)
        return [errors.get(i) or _paper(pages[i], self.max_pixels) for i in range(len(items))]

    def split(self, items: list[TexItem]) -> list[np.ndarray | RenderFailure]:
        half = len(items) // 2
        return self.render(items[:half]) + self.render(items[half:])

    def document(self, items: list[TexItem]) -> str:
        """One page per formula; `\\count0` = index + 1 names the page for `dvipng -pp` and its file."""
        lines = [
            "\\RequirePackage{fix-cm}" if self.font.fix_cm else "",
            "\\documentclass{article}",
            self.font.preamble + FALLBACK_COMMANDS,
            "\\newcommand\\ts[4]{\\typeout{<ts:begin:#1>}\\begingroup\\fontsize{#2}{#2}\\selectfont"
            f"{self.font.switch}\\setbox0\\hbox{{$#3 #4$}}\\count0=\\numexpr#1+1\\relax\\shipout\\box0"
            "\\endgroup\\typeout{<ts:end:#1>}}",
            "\\begin{document}",
            "\\tracinglostchars=3",  # a character missing from the font is an error, not a silent gap
        ]
        for i, item in enumerate(items):
            style = "\\displaystyle" if item.display else "\\textstyle"
            lines.append(f"\\ts{{{i}}}{{{item.size:g}}}{{{style}}}{{{item.latex}}}")
        lines.append("\\end{document}")
        return "\n".join(lines) + "\n"

    def dvipng(
        self, stem: str, items: list[TexItem], errors: dict[int, RenderFailure]
    ) -> list[Path] | RenderFailure:
        """Convert the pages that compiled, one `dvipng -pp` pass per dpi; the page files in item order."""
        by_dpi: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            if i not in errors:
                by_dpi.setdefault(item.dpi, []).append(i + 1)
        for dpi, pages in by_dpi.items():
            cmd = ["dvipng", "-q", "-T", "tight", "-D", str(dpi), "-z", "1", "-o", f"{stem}-%d.png"]
            cmd += ["-pp", ",".join(map(str, pages)), f"{stem}.dvi"]
            try:
                proc = subprocess.run(
                    cmd,
                    cwd=self.folder,
                    capture_output=True,
                    text=True,
                    timeout=30 + 0.5 * len(pages),
                    errors="replace",
                )
            except subprocess.TimeoutExpired:
                return RenderFailure("timeout", "dvipng took too long")
            if proc.returncode != 0 or not all((self.folder / f"{stem}-{k}.png").is_file() for k in pages):
                return RenderFailure(
                    "renderer_error", f"dvipng failed: {(proc.stderr or proc.stdout)[-300:]}"
                )
        return [self.folder / f"{stem}-{k}.png" for k in range(1, len(items) + 1)]


def parse_log(log: str, n: int) -> tuple[dict[int, RenderFailure], bool]:
    """Errors by formula index from a batch log, and whether the run's structure is intact.

    Intact means every formula logged both markers, in order, and TeX wrote exactly `n` pages.
    """
    errors: dict[int, RenderFailure] = {}
    events = list(_MARKER_RE.finditer(log))
    expected = [(kind, str(i)) for i in range(n) for kind in ("begin", "end")]
    found = [(m.group(1), m.group(2)) for m in events]
    for k, m in enumerate(events):
        if m.group(1) != "begin":
            continue
        end = events[k + 1].start() if k + 1 < len(events) else len(log)
        failure = classify_error(log[m.end() : end])
        if failure is not None:
            errors[int(m.group(2))] = failure
    pages = _PAGES_RE.search(log)
    return errors, found == expected and pages is not None and int(pages.group(1)) == n


def classify_error(segment: str) -> RenderFailure | None:
    """The first TeX error (`! ...`) in a log segment as a `RenderFailure`, or None when there is none."""
    lines = segment.splitlines()
    for k, line in enumerate(lines):
        if not line.startswith("! "):
            continue
        message = line[2:].strip()
        cause = next((c for pattern, c in _ERROR_CAUSES if re.search(pattern, message)), "other_tex_error")
        detail = message
        if cause == "undefined_control_sequence" and k + 1 < len(lines):
            m = _TRAILING_CS.search(lines[k + 1])
            if m:
                detail = f"Undefined control sequence {m.group(1)}"
        return RenderFailure(cause, detail[:300])
    return None


def _last_error(log: str) -> str | None:
    failure = classify_error(log)
    return failure.detail if failure else None


def _paper(path: Path, max_pixels: int) -> np.ndarray | RenderFailure:
    """Read a dvipng page as uint8 (H, W); a page without dark pixels is `empty_output`."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        return RenderFailure("renderer_error", f"dvipng wrote an unreadable page {path.name}")
    if img.size > max_pixels:
        return RenderFailure("image_too_large", f"{img.shape[1]}x{img.shape[0]} px > {max_pixels:,}")
    if int(img.min()) > 127:
        return RenderFailure("empty_output", "the page has no ink")
    return img


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
