//! The invariants of ARCHITECTURE.md that can be checked by reading the source tree.
//!
//! Each check reads every non-test file under `src/`, removes comments (and, where the check is
//! about code, the contents of string and char literals) and items under `#[cfg(test)]`, and
//! looks for what the invariant forbids. A justified exception is listed with its reason, and
//! must still be needed: an exception that matches nothing fails the test, so the list cannot
//! go stale. The scanner's own tests below prove each check can fail.
//!
//! What clippy already enforces is not repeated in spirit: `print_stdout`/`print_stderr` are
//! denied in `src/lib.rs` and `src/main.rs` (allowed on `mod cli`). This test also catches what
//! those lints cannot: a raw `std::io::stdout()`/`stderr()` handle, and an `#[allow]` that
//! switches the lints off somewhere else.

use std::path::{Path, PathBuf};

use regex::Regex;

/// One thing a check looks for.
struct Pattern {
    name: &'static str,
    regex: &'static str,
}

/// A place where a pattern is allowed, and why.
struct Exception {
    /// Path below `src/`, or a folder ending in `/`.
    path: &'static str,
    pattern: &'static str,
    why: &'static str,
}

#[derive(Debug, PartialEq)]
struct Hit {
    path: String,
    line: usize,
    pattern: &'static str,
}

// ---- Output: only the CLI writes to stdout and stderr; the rest logs through `tracing`. ----

const OUTPUT: &[Pattern] = &[
    Pattern {
        name: "print macro",
        regex: r"\b(e?print(ln)?|dbg)!",
    },
    Pattern {
        name: "stdout/stderr handle",
        // `io::stdout`, `io::stderr` as a path, or a bare `stdout()` call; not the
        // `.stdout(Stdio::piped())` of a `Command`.
        regex: r"\bio::std(out|err)\b|(^|[^.\w])std(out|err)\s*\(\s*\)",
    },
    Pattern {
        name: "print lint allowed",
        regex: r"allow\s*\([^)]*clippy::print_std(out|err)",
    },
];

const OUTPUT_EXCEPTIONS: &[Exception] = &[
    Exception {
        path: "cli/",
        pattern: "print macro",
        why: "the CLI prints its answers",
    },
    Exception {
        path: "cli/",
        pattern: "stdout/stderr handle",
        why: "the CLI writes diffs and reports to stdout",
    },
    Exception {
        path: "lib.rs",
        pattern: "print lint allowed",
        why: "the one `#[allow]` on `mod cli`",
    },
    Exception {
        path: "engine/failpoint.rs",
        pattern: "print macro",
        why: "the kill -9 fault tests wait for the failpoint line on stderr (feature-gated)",
    },
    Exception {
        path: "engine/failpoint.rs",
        pattern: "print lint allowed",
        why: "the allow on that one line",
    },
    Exception {
        path: "telemetry/logging.rs",
        pattern: "stdout/stderr handle",
        why: "the tracing subscriber writes the log to stderr",
    },
];

// ---- Files: every write goes through `durable` (atomic replace, fsync, modes). ----

const FILE_WRITES: &[Pattern] = &[
    Pattern {
        name: "fs::write",
        regex: r"\bfs::write\b",
    },
    Pattern {
        name: "File::create",
        regex: r"\bFile::create(_new)?\b",
    },
    Pattern {
        name: "OpenOptions",
        regex: r"\bOpenOptions\b",
    },
    Pattern {
        name: "rename",
        regex: r"\bfs::rename\b",
    },
    Pattern {
        name: "copy or link",
        regex: r"\bfs::(copy|hard_link)\b|\bsymlink\s*\(",
    },
];

const FILE_WRITE_EXCEPTIONS: &[Exception] = &[
    Exception {
        path: "durable.rs",
        pattern: "OpenOptions",
        why: "the one module that writes files",
    },
    Exception {
        path: "durable.rs",
        pattern: "rename",
        why: "the one module that writes files",
    },
    Exception {
        path: "state/lock.rs",
        pattern: "OpenOptions",
        why: "the lock file is opened in place and flock()ed: every process must lock the same \
              inode, so it cannot be replaced atomically; it only ever holds a pid",
    },
    Exception {
        path: "state/store.rs",
        pattern: "rename",
        why: "a damaged state file is moved aside to `.corrupt-<time>` (a move, never a write; \
              the folder is then fsynced with durable::sync_dir)",
    },
    Exception {
        path: "config/files.rs",
        pattern: "OpenOptions",
        why: "opens operator files for reading only, with O_NONBLOCK so a FIFO cannot hang the \
              open; it never writes",
    },
    Exception {
        path: "durable.rs",
        pattern: "copy or link",
        why: "the one module that writes files: `create_new` links its temp file into place \
              where the file system cannot rename without replacing",
    },
];

// ---- Engine: no registry vendor or compose flavor is named in the engine. ----

/// Words (identifiers split at `_` and case changes, strings split at non-letters) that name a
/// registry vendor or a compose flavor. A pair is two words in a row.
const VENDOR_WORDS: &[&str] = &[
    "ecr",
    "gcr",
    "ghcr",
    "aws",
    "google",
    "gcp",
    "quay",
    "dockerhub",
];
const VENDOR_PAIRS: &[(&str, &str)] = &[
    ("docker", "hub"),
    ("compose", "v1"),
    ("compose", "v2"),
    ("docker", "compose"),
];

// ---- Imports run one way: the configuration schema depends on these modules, never the reverse. ----

/// The modules below `src/` that `config` imports, which must not import `crate::config`
/// back: they take plain values, and `src/config/settings.rs` builds those values from a
/// `Config`.
const CONFIG_FREE: &[&str] = &[
    "schedule/",
    "telemetry/",
    "secret.rs",
    "redact.rs",
    "policy/",
    "reference.rs",
    "state/",
];

/// `crate::config`, `super::config` / `super::super::config`, and `config` inside a
/// `crate::{…}` group (which may span lines).
const CONFIG_IMPORT: &str = r"\b(crate|super)(::super)*::config\b|\bcrate::\{[^}]*\bconfig\b";

#[test]
fn only_the_cli_prints() {
    let hits = scan_tree(OUTPUT, true);
    assert_clean(&hits, OUTPUT_EXCEPTIONS, "output outside src/cli");
}

#[test]
fn only_durable_writes_files() {
    let hits = scan_tree(FILE_WRITES, true);
    assert_clean(
        &hits,
        FILE_WRITE_EXCEPTIONS,
        "file write outside src/durable.rs",
    );
}

#[test]
fn the_engine_names_no_vendor() {
    let mut hits = Vec::new();
    for (path, text) in sources() {
        if path.starts_with("engine/") {
            hits.extend(vendor_hits(&path, &text));
        }
    }
    assert!(
        hits.is_empty(),
        "registry vendor or compose flavor named in src/engine (belongs in src/registry or \
         src/runtime): {hits:#?}"
    );
}

#[test]
fn modules_config_imports_do_not_import_config() {
    let mut hits = Vec::new();
    for (path, text) in sources() {
        if CONFIG_FREE.iter().any(|m| covers_path(m, &path)) {
            hits.extend(config_imports(&path, &text));
        }
    }
    for module in CONFIG_FREE {
        assert!(
            sources().iter().any(|(path, _)| covers_path(module, path)),
            "src/{module} is gone: update CONFIG_FREE"
        );
    }
    assert!(
        hits.is_empty(),
        "import of crate::config in a module config depends on (move the shared type into the \
         module that owns it, or build the plain value in src/config/settings.rs): {hits:#?}"
    );
}

#[test]
fn the_library_and_binary_forbid_unsafe_code() {
    for file in ["src/lib.rs", "src/main.rs"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        assert!(
            text.contains("#![forbid(unsafe_code)]"),
            "{file} lost #![forbid(unsafe_code)]"
        );
    }
}

// ---- The scanner ----

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every non-test `.rs` file below `src/`, as (path below `src/`, text).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = root().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 20,
        "found only {} files in {src:?}",
        files.len()
    );
    files
        .into_iter()
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with("tests.rs")
        })
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_str().unwrap().to_owned();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

fn scan_tree(patterns: &'static [Pattern], blank_strings: bool) -> Vec<Hit> {
    sources()
        .iter()
        .flat_map(|(path, text)| scan(path, text, patterns, blank_strings))
        .collect()
}

fn scan(path: &str, text: &str, patterns: &'static [Pattern], blank_strings: bool) -> Vec<Hit> {
    let code = code_of(text, blank_strings);
    let mut hits = Vec::new();
    for p in patterns {
        let re = Regex::new(p.regex).unwrap();
        for (i, line) in code.lines().enumerate() {
            if re.is_match(line) {
                hits.push(Hit {
                    path: path.to_owned(),
                    line: i + 1,
                    pattern: p.name,
                });
            }
        }
    }
    hits
}

/// Whether `path` (below `src/`) is `module`, or lies in it when `module` ends in `/`.
fn covers_path(module: &str, path: &str) -> bool {
    if module.ends_with('/') {
        path.starts_with(module)
    } else {
        path == module
    }
}

/// Imports of `crate::config` in `text` (comments, strings and test items removed), as hits.
fn config_imports(path: &str, text: &str) -> Vec<Hit> {
    let code = code_of(text, true);
    let re = Regex::new(CONFIG_IMPORT).unwrap();
    re.find_iter(&code)
        .map(|m| Hit {
            path: path.to_owned(),
            line: code[..m.start()].matches('\n').count() + 1,
            pattern: "config import",
        })
        .collect()
}

fn covers(e: &Exception, hit: &Hit) -> bool {
    e.pattern == hit.pattern
        && if e.path.ends_with('/') {
            hit.path.starts_with(e.path)
        } else {
            hit.path == e.path
        }
}

/// Fails on any hit no exception covers, and on any exception that covers no hit.
fn assert_clean(hits: &[Hit], exceptions: &[Exception], what: &str) {
    let bad: Vec<&Hit> = hits
        .iter()
        .filter(|h| !exceptions.iter().any(|e| covers(e, h)))
        .collect();
    assert!(bad.is_empty(), "{what} (paths below src/): {bad:#?}");
    for e in exceptions {
        assert!(
            hits.iter().any(|h| covers(e, h)),
            "the exception for {} in src/{} ({}) is no longer needed: remove it",
            e.pattern,
            e.path,
            e.why
        );
    }
}

/// Identifier words and string words of `text` (comments and test items removed) that name
/// a vendor, as hits.
fn vendor_hits(path: &str, text: &str) -> Vec<Hit> {
    let code = code_of(text, false);
    let mut hits = Vec::new();
    for (i, line) in code.lines().enumerate() {
        let words = words(line);
        let single = words.iter().any(|w| VENDOR_WORDS.contains(&w.as_str()));
        let pair = words
            .windows(2)
            .any(|w| VENDOR_PAIRS.contains(&(w[0].as_str(), w[1].as_str())));
        if single || pair {
            hits.push(Hit {
                path: path.to_owned(),
                line: i + 1,
                pattern: "vendor name",
            });
        }
    }
    hits
}

/// `DockerHub::ecr_token("docker-compose")` → docker hub ecr token docker compose.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for token in line.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut word = String::new();
        let mut prev_lower = false;
        for c in token.chars() {
            if c.is_ascii_uppercase() && prev_lower {
                out.push(std::mem::take(&mut word));
            }
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            word.push(c.to_ascii_lowercase());
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    out
}

/// `text` with comments blanked out and, with `blank_strings`, the contents of string and char
/// literals too. Blanked characters become spaces (line breaks stay), so every character keeps
/// its position and every line its number.
fn strip(text: &str, blank_strings: bool) -> Vec<char> {
    let c: Vec<char> = text.chars().collect();
    let mut out = c.clone();
    let ident = |i: usize| c[i].is_alphanumeric() || c[i] == '_';
    let mut blank = |from: usize, to: usize| {
        for ch in &mut out[from..to.min(c.len())] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
    };
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            let start = i;
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            blank(start, i);
        } else if c[i] == '/' && next == Some('*') {
            let (mut depth, start) = (0, i);
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            blank(start, i);
        } else if c[i] == 'r'
            && (i == 0 || !ident(i - 1) || (c[i - 1] == 'b' && (i < 2 || !ident(i - 2))))
            && matches!(next, Some('#' | '"'))
        {
            // A raw string: r"…", r#"…"#, br"…".
            let mut j = i + 1;
            while j < c.len() && c[j] == '#' {
                j += 1;
            }
            let hashes = j - i - 1;
            if j >= c.len() || c[j] != '"' {
                i += 1;
                continue;
            }
            let mut k = j + 1;
            while k < c.len() && !(c[k] == '"' && (1..=hashes).all(|h| c.get(k + h) == Some(&'#')))
            {
                k += 1;
            }
            if blank_strings {
                blank(j + 1, k);
            }
            i = k + 1 + hashes;
        } else if c[i] == '"' {
            let mut k = i + 1;
            while k < c.len() && c[k] != '"' {
                k += if c[k] == '\\' { 2 } else { 1 };
            }
            if blank_strings {
                blank(i + 1, k);
            }
            i = k + 1;
        } else if c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\'', '\u{1F600}'); a lifetime ('a) has no closing quote.
            let mut k = if next == Some('\\') { i + 3 } else { i + 2 };
            while k < c.len() && c[k] != '\'' {
                k += 1;
            }
            if blank_strings {
                blank(i + 1, k);
            }
            i = k + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Which characters of `code` (stripped, strings blanked) belong to an item under
/// `#[cfg(test)]`: up to its `;`, or to the end of its `{ … }` block.
fn test_items(code: &[char]) -> Vec<bool> {
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut mask = vec![false; code.len()];
    let mut i = 0;
    while i + marker.len() <= code.len() {
        if code[i..i + marker.len()] != marker[..] {
            i += 1;
            continue;
        }
        let mut end = i + marker.len();
        let mut depth = 0usize;
        while end < code.len() {
            match code[end] {
                ';' if depth == 0 => break,
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            end += 1;
        }
        let end = (end + 1).min(code.len());
        mask[i..end].fill(true);
        i = end;
    }
    mask
}

/// The text of `text` a check reads: no comments, no `#[cfg(test)]` items and, with
/// `blank_strings`, no literal contents.
fn code_of(text: &str, blank_strings: bool) -> String {
    let blanked = strip(text, true);
    let mask = test_items(&blanked);
    let kept = if blank_strings {
        blanked
    } else {
        strip(text, false)
    };
    kept.iter()
        .zip(mask)
        .map(|(&ch, test)| if test && ch != '\n' { ' ' } else { ch })
        .collect()
}

// ---- The scanner can fail ----

fn names(hits: &[Hit]) -> Vec<&'static str> {
    hits.iter().map(|h| h.pattern).collect()
}

#[test]
fn scanner_finds_prints_and_raw_handles_but_not_in_comments_strings_or_tests() {
    let found = scan("x.rs", "fn f() { println!(\"hi\"); }", OUTPUT, true);
    assert_eq!(names(&found), ["print macro"]);
    let found = scan(
        "x.rs",
        "let _ = writeln!(std::io::stderr(), \"x\");",
        OUTPUT,
        true,
    );
    assert_eq!(names(&found), ["stdout/stderr handle"]);
    let found = scan(
        "x.rs",
        "use std::io::stdout;\nlet o = stdout();",
        OUTPUT,
        true,
    );
    assert_eq!(found.len(), 2);
    assert_eq!(found[1].line, 2);
    let found = scan("x.rs", "#[allow(clippy::print_stdout)]", OUTPUT, true);
    assert_eq!(names(&found), ["print lint allowed"]);
    let quiet = "// println!(\"x\")\n/* eprintln!() /* nested */ dbg!() */\n\
                 let s = \"print!(\";\nlet r = r#\"println!(\"#;\n\
                 cmd.stdout(Stdio::piped());\n\
                 #[cfg(test)]\nmod tests { fn t() { println!(\"{}\", '}'); } }\n";
    assert_eq!(scan("x.rs", quiet, OUTPUT, true), []);
}

#[test]
fn scanner_finds_file_writes_and_keeps_line_numbers() {
    let text = "fn a() {}\n/* one\ntwo */\nfn b() { std::fs::write(p, \"x\\\"\").unwrap(); }\n\
                fn c() { File::create(p); tokio::fs::rename(a, b); }\n\
                fn d() { OpenOptions::new().write(true); fs::copy(a, b); }\n";
    let found = scan("x.rs", text, FILE_WRITES, true);
    let at: Vec<(usize, &str)> = found.iter().map(|h| (h.line, h.pattern)).collect();
    assert_eq!(
        at,
        [
            (4, "fs::write"),
            (5, "File::create"),
            (6, "OpenOptions"),
            (5, "rename"),
            (6, "copy or link"),
        ]
    );
    assert_eq!(
        scan("x.rs", "let s = \"fs::write\";", FILE_WRITES, true),
        []
    );
}

#[test]
fn exceptions_must_match_and_stay_needed() {
    let hits = scan("state/lock.rs", "OpenOptions::new()", FILE_WRITES, true);
    assert_clean(&hits, &FILE_WRITE_EXCEPTIONS[2..3], "test");
    let unused = std::panic::catch_unwind(|| assert_clean(&[], &FILE_WRITE_EXCEPTIONS[2..3], "t"));
    assert!(
        unused.is_err(),
        "an exception that matches nothing must fail"
    );
    let elsewhere = scan("engine/x.rs", "OpenOptions::new()", FILE_WRITES, true);
    let wrong = std::panic::catch_unwind(|| {
        assert_clean(&elsewhere, &FILE_WRITE_EXCEPTIONS[2..3], "t");
    });
    assert!(
        wrong.is_err(),
        "a write outside the excepted file must fail"
    );
}

#[test]
fn scanner_finds_vendor_words_in_code_and_strings_but_not_comments() {
    let lines = |text| {
        vendor_hits("engine/x.rs", text)
            .iter()
            .map(|h| h.line)
            .collect::<Vec<_>>()
    };
    assert_eq!(lines("let c = EcrClient::new();"), [1]);
    assert_eq!(lines("fn f() {}\nif host == \"gcr.io\" {}"), [2]);
    assert_eq!(lines("registry::docker_hub::limits()"), [1]);
    assert_eq!(lines("let bin = \"docker-compose\";"), [1]);
    assert_eq!(lines("Flavor::ComposeV1 => {}"), [1]);
    assert_eq!(lines("// the aws sdk retries itself"), Vec::<usize>::new());
    assert_eq!(lines("let decrypted = secrets.aws_free();"), [1]);
    assert_eq!(
        lines("let decrypted = hubris(docker);"),
        Vec::<usize>::new()
    );
}

#[test]
fn scanner_finds_config_imports_but_not_in_comments_strings_or_tests() {
    let lines = |text| {
        config_imports("telemetry/x.rs", text)
            .iter()
            .map(|h| h.line)
            .collect::<Vec<_>>()
    };
    assert_eq!(lines("use crate::config::Config;"), [1]);
    assert_eq!(lines("fn f(c: &crate::config::Config) {}"), [1]);
    assert_eq!(lines("use super::super::config;"), [1]);
    assert_eq!(
        lines("use std::fmt;\nuse crate::{\n    config,\n    x,\n};"),
        [2]
    );
    assert_eq!(
        lines(
            "// crate::config is the schema\nlet s = \"crate::config\";\n\
             use crate::configured;\n#[cfg(test)]\nmod tests { use crate::config::Config; }"
        ),
        Vec::<usize>::new()
    );
    assert!(covers_path("schedule/", "schedule/window.rs"));
    assert!(!covers_path("secret.rs", "secrets.rs"));
}
