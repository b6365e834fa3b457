"""Which names a definition may give its parameters and inputs.

Each parameter and input reaches the script as an environment variable of the same name, so a
name is also a way to set a variable in the job's environment.  A deny-list of exact names is the
wrong shape for that: every shell, loader, interpreter and library reads variables of its own
(``PERL5OPT``, ``NODE_OPTIONS``, ``GCONV_PATH``, ``GLIBC_TUNABLES``...), and a missed one runs
code chosen by whoever sets the value.  So a name must

1. fit an allow-list pattern (``PARAM_NAME_RE``: a letter, then letters, digits and ``_``), and
2. not be, start with or end with anything known to change how a program behaves (the families
   below), compared upper-cased: environment names are case-sensitive, but some programs read
   lower-case variants (``http_proxy``), and a near miss is cheap to rename.

The rule applies wherever a definition is read (a proposal, a file in ``JDL_DIR``, a kept
version), so an old definition cannot bring a forbidden name back.  docs/job-definitions.md
lists the families for definition authors.
"""

from __future__ import annotations

import re

PARAM_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}\Z")

#: Exact names (upper-cased).
RESERVED_NAMES = frozenset("""
    PATH HOME SHELL USER LOGNAME PWD OLDPWD TMPDIR TMP TEMP TEMPDIR TERM TERMCAP ENV IFS BASH
    CDPATH GLOBIGNORE SHELLOPTS BASHOPTS POSIXLY_CORRECT PS0 PS1 PS2 PS3 PS4 PROMPT_COMMAND
    PROMPT_DIRTRIM INPUTRC HISTFILE HISTFILESIZE HISTSIZE HISTCONTROL HISTIGNORE HISTTIMEFORMAT
    TMOUT FUNCNEST EXECIGNORE FIGNORE HOSTFILE IGNOREEOF TIMEFORMAT CHILD_MAX COMP_WORDBREAKS
    OPTIND OPTARG OPTERR SHLVL FPATH ZDOTDIR
    CLASSPATH LANG LANGUAGE TZ TZDIR LOCPATH NLSPATH HOSTALIASES LOCALDOMAIN RES_OPTIONS
    GETCONF_DIR NIS_PATH RESOLV_HOST_CONF GI_TYPELIB_PATH LIBPATH SHLIB_PATH MODULEPATH
    CPATH LIBRARY_PATH C_INCLUDE_PATH CPLUS_INCLUDE_PATH COMPILER_PATH GCC_EXEC_PREFIX
    CC CXX CPP CFLAGS CXXFLAGS CPPFLAGS LDFLAGS FFLAGS MAKEFLAGS MFLAGS GNUMAKEFLAGS MAKEFILES MAKELEVEL
    EDITOR VISUAL PAGER MANPAGER MANPATH BROWSER LESS LESSOPEN LESSCLOSE LESSKEY LESSSECURE
    SSLKEYLOGFILE REQUESTS_CA_BUNDLE NETRC WGETRC DEBUGINFOD_URLS
    DISPLAY XAUTHORITY WAYLAND_DISPLAY GNUPGHOME KRB5CCNAME VIRTUAL_ENV PFILES HEADAS
    GODEBUG GOFLAGS GOROOT GOPATH GOENV GOTOOLCHAIN GOPROXY GOCACHE GOMAXPROCS GOGC GOMEMLIMIT GOTRACEBACK
""".split())

#: Prefixes (upper-cased): families of variables read by one runtime or library.
RESERVED_PREFIXES = tuple("""
    OPUS_ SLURM_ SBATCH_ SRUN_ SALLOC_
    LD_ DYLD_ GCONV_ GLIBC_ MALLOC_ LIBC_ BASH_ LC_ TERMINFO
    PYTHON PYENV_ CONDA_ MAMBA_ PIP_ PERL RUBY GEM_ BUNDLE_ NODE_ NPM_ JAVA_ _JAVA_ JDK_
    R_ TCL TK_ LUA_ JULIA_ DOTNET_ CORECLR_ COMPLUS_ IDL_ GDL_
    OPENSSL_ SSL_ CURL_ GIT_ SSH_ GPG_ KRB5_ SUDO_ XDG_ DBUS_ GTK_ GDK_ GIO_ GST_ QT_ HDF5_PLUGIN
    OMP_ KMP_ GOMP_ MKL_ OPENBLAS_ OMPI_ PMI_ PMIX_ I_MPI_ MPICH_ UCX_ HYDRA_ ASAN_ UBSAN_
""".split())

#: Suffixes (upper-cased): a whole convention, whatever the program (``JAVA_TOOL_OPTIONS``,
#: ``NODE_OPTIONS``, ``RES_OPTIONS``, ``MAVEN_OPTS``, ``HTTPS_PROXY``, ``QT_PLUGIN_PATH``...).
RESERVED_SUFFIXES = ("_OPTIONS", "_OPTS", "_PROXY", "_PLUGIN_PATH", "_LIBRARY_PATH", "_PRELOAD")


def reserved_reason(name: str) -> str | None:
    """Why ``name`` may not be a parameter or input name, or None when it may.

    The answer names the rule (for the error message a definition's author reads).
    """
    if not PARAM_NAME_RE.match(name or ""):
        return "a letter first, then letters, digits or '_' (at most 64)"
    upper = name.upper()
    if upper in RESERVED_NAMES:
        return "reserved: it would change the job's environment"
    prefix = next((p for p in RESERVED_PREFIXES if upper.startswith(p)), None)
    if prefix is not None:
        return f"reserved: names starting with {prefix!r} would change the job's environment"
    suffix = next((s for s in RESERVED_SUFFIXES if upper.endswith(s)), None)
    if suffix is not None:
        return f"reserved: names ending with {suffix!r} would change the job's environment"
    return None
