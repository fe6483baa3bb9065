//! Keeps `docs/conformance.md` true. That page lists every row of the requirements matrix with
//! frontdesk's status and the tests that check it; this test finds the tests by the row IDs they
//! cite (in a comment at the assertion, the test's doc comment or a case label) and fails when:
//!
//! * a row the page calls met (or partial) is cited by no test, so a claim of conformance
//!   always points at something that can fail;
//! * a test cites an ID the page does not list (a typo, or a row the page forgot);
//! * the page's "Tests" column differs from what the sources cite. After adding or moving a
//!   citation, rewrite the column with
//!   `FRONTDESK_BLESS_CONFORMANCE=1 cargo nextest run --test requirements_matrix`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Statuses a row may have; those that claim conformance need a citing test.
const CLAIMS_CONFORMANCE: &[&str] = &["met", "partial"];
const OTHER_STATUSES: &[&str] = &["not offered", "n/a"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn page_path() -> PathBuf {
    root().join("docs/conformance.md")
}

/// One row of the page's tables.
struct Row {
    line: usize,
    id: String,
    status: String,
    tests: String,
}

/// The cells of a table row `| a | b | … |`, trimmed; `None` for any other line.
fn cells(line: &str) -> Option<Vec<&str>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.split('|').map(str::trim).collect())
}

/// Whether `word` has the shape of a row ID: upper-case parts joined by `-`, the last one digits.
fn looks_like_id(word: &str) -> bool {
    let Some((prefix, digits)) = word.rsplit_once('-') else {
        return false;
    };
    !prefix.is_empty()
        && prefix.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })
        && prefix
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_uppercase())
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
}

fn parse_page(text: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let Some(cells) = cells(line) else { continue };
        if cells.len() != 5 || !looks_like_id(cells[0]) {
            continue;
        }
        rows.push(Row {
            line: index + 1,
            id: cells[0].to_owned(),
            status: cells[2].to_owned(),
            tests: cells[4].to_owned(),
        });
    }
    rows
}

/// The prefix of an ID (`IDJAG-ISSUE` of `IDJAG-ISSUE-07`).
fn prefix(id: &str) -> &str {
    id.rsplit_once('-').map_or(id, |(prefix, _)| prefix)
}

/// Words of a line shaped like a row ID with a known prefix (listed or not: a typo is caught).
fn cited_ids<'a>(line: &'a str, prefixes: &BTreeSet<&str>) -> Vec<&'a str> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .map(|word| word.trim_matches('-'))
        .filter(|word| looks_like_id(word) && prefixes.contains(prefix(word)))
        .collect()
}

/// IDs a test's name cites in snake case, as many tests here end (or start) their names:
/// `…_bcp_07_09` cites BCP-07 and BCP-09, `cmeta_04_a_public_client…` CMETA-04, `bcp02_…`
/// BCP-02. Only a known prefix followed by two-digit numbers counts.
fn ids_in_name(name: &str, prefixes: &BTreeSet<&str>) -> Vec<String> {
    let words: Vec<&str> = name.split('_').collect();
    let mut ids = Vec::new();
    for prefix in prefixes {
        let parts: Vec<String> = prefix.split('-').map(str::to_ascii_lowercase).collect();
        for start in 0..words.len() {
            let end = start + parts.len();
            if end > words.len() || words[start..end].iter().zip(&parts).any(|(w, p)| *w != p) {
                continue;
            }
            let numbers = words[end..]
                .iter()
                .take_while(|w| w.len() == 2 && w.bytes().all(|b| b.is_ascii_digit()));
            ids.extend(numbers.map(|number| format!("{prefix}-{number}")));
        }
        // A one-part prefix glued to its number: `bcp02_alg_none…`.
        if let [part] = parts.as_slice() {
            for word in &words {
                if let Some(number) = word.strip_prefix(part.as_str())
                    && number.len() == 2
                    && number.bytes().all(|b| b.is_ascii_digit())
                {
                    ids.push(format!("{prefix}-{number}"));
                }
            }
        }
    }
    ids
}

/// The name of the function a line declares, if it declares one (Rust `fn`, Python `def`).
fn declared_fn(line: &str, python: bool) -> Option<&str> {
    let trimmed = line.trim_start();
    let rest = if python {
        trimmed
            .strip_prefix("async ")
            .unwrap_or(trimmed)
            .strip_prefix("def ")?
    } else {
        let mut rest = trimmed;
        for qualifier in ["pub(crate) ", "pub ", "async ", "unsafe "] {
            rest = rest.strip_prefix(qualifier).unwrap_or(rest);
        }
        rest.strip_prefix("fn ")?
    };
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// Lines that lead into a declaration: comments and attributes (a citation there belongs to the
/// function below).
fn is_preamble(line: &str, python: bool) -> bool {
    let trimmed = line.trim_start();
    if python {
        trimmed.starts_with('#') || trimmed.starts_with('@')
    } else {
        (trimmed.starts_with("//") && !trimmed.starts_with("//!")) || trimmed.starts_with("#[")
    }
}

/// Which part of a source file holds tests: all of a test file, the part of a library module
/// after its `#[cfg(test)]`.
fn test_lines(relative: &Path, text: &str) -> usize {
    if !relative.starts_with("src") || relative.file_name().is_some_and(|name| name == "tests.rs") {
        return 0;
    }
    text.lines()
        .position(|line| line.trim_start().starts_with("#[cfg(test)]"))
        .unwrap_or(usize::MAX)
}

/// For each cited ID, the places citing it (`path::function`, or `path` for a citation outside
/// any function).
fn citations(
    root: &Path,
    files: &[PathBuf],
    prefixes: &BTreeSet<&str>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in files {
        let text = std::fs::read_to_string(path).expect("read a source file");
        let relative_path = path
            .strip_prefix(root)
            .expect("scanned files are in the repository");
        let relative = relative_path.to_string_lossy().replace('\\', "/");
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let functions = matches!(extension, "rs" | "py");
        let python = extension == "py";
        let lines: Vec<&str> = text.lines().collect();
        let first = test_lines(relative_path, &text);
        let mut enclosing: Option<&str> = None;
        for (index, line) in lines.iter().enumerate() {
            if functions && let Some(name) = declared_fn(line, python) {
                enclosing = Some(name);
                if index >= first {
                    for id in ids_in_name(name, prefixes) {
                        found
                            .entry(id)
                            .or_default()
                            .insert(format!("{relative}::{name}"));
                    }
                }
            }
            if index < first {
                continue;
            }
            let ids = cited_ids(line, prefixes);
            if ids.is_empty() {
                continue;
            }
            let owner = if !functions {
                None
            } else if is_preamble(line, python) {
                // A comment or attribute: the function it introduces, else the enclosing one.
                lines[index + 1..]
                    .iter()
                    .find(|next| !is_preamble(next, python))
                    .and_then(|next| declared_fn(next, python))
                    .or(enclosing)
            } else {
                enclosing
            };
            let place = match owner {
                Some(function) => format!("{relative}::{function}"),
                None => relative.clone(),
            };
            for id in ids {
                found
                    .entry(id.to_owned())
                    .or_default()
                    .insert(place.clone());
            }
        }
    }
    found
}

/// Every file that may hold a test: the integration tests and their helpers, the black-box
/// suite, and the library's unit-test modules.
fn source_files() -> Vec<PathBuf> {
    fn walk(directory: &Path, files: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(directory) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if !matches!(
                    name.as_ref(),
                    "node_modules" | ".venv" | "target" | "fixtures"
                ) && !name.starts_with('.')
                {
                    walk(&path, files);
                }
            } else if [".rs", ".py", ".mjs", ".js"]
                .iter()
                .any(|ext| name.ends_with(ext))
                && !path.ends_with("tests/requirements_matrix.rs")
            {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for directory in ["tests", "conformance", "src", "benches"] {
        walk(&root().join(directory), &mut files);
    }
    files.sort();
    files
}

fn render(places: Option<&BTreeSet<String>>) -> String {
    match places {
        None => "–".to_owned(),
        Some(places) => places
            .iter()
            .map(|place| format!("`{place}`"))
            .collect::<Vec<_>>()
            .join("<br>"),
    }
}

#[test]
fn the_conformance_page_names_a_test_for_every_row_it_calls_met() {
    let page = std::fs::read_to_string(page_path()).expect("docs/conformance.md");
    let rows = parse_page(&page);
    assert!(
        rows.len() > 200,
        "docs/conformance.md lists only {} rows",
        rows.len()
    );

    let listed: BTreeSet<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    assert_eq!(
        listed.len(),
        rows.len(),
        "an ID is listed twice in docs/conformance.md"
    );
    let prefixes: BTreeSet<&str> = listed.iter().map(|id| prefix(id)).collect();
    let cited = citations(&root(), &source_files(), &prefixes);

    let mut problems = Vec::new();
    for id in cited.keys() {
        if !listed.contains(id.as_str()) {
            let places: Vec<&String> = cited[id].iter().collect();
            problems.push(format!(
                "{id} is cited by {places:?} but docs/conformance.md does not list it"
            ));
        }
    }
    for row in &rows {
        let known = CLAIMS_CONFORMANCE
            .iter()
            .chain(OTHER_STATUSES)
            .any(|status| {
                row.status
                    .strip_prefix(status)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([',', ':']))
            });
        if !known {
            problems.push(format!(
                "docs/conformance.md:{}: {} has an unknown status {:?}",
                row.line, row.id, row.status
            ));
        }
        let claims = CLAIMS_CONFORMANCE
            .iter()
            .any(|status| row.status.starts_with(status));
        if claims && !cited.contains_key(&row.id) {
            problems.push(format!(
                "docs/conformance.md:{}: {} is {:?} but no test cites it",
                row.line, row.id, row.status
            ));
        }
    }

    let bless = std::env::var_os("FRONTDESK_BLESS_CONFORMANCE").is_some();
    let stale: Vec<&Row> = rows
        .iter()
        .filter(|row| row.tests != render(cited.get(&row.id)))
        .collect();
    if bless && !stale.is_empty() {
        let mut out = String::with_capacity(page.len());
        for line in page.lines() {
            let replaced = cells(line)
                .filter(|c| c.len() == 5 && listed.contains(c[0]))
                .map(|c| {
                    format!(
                        "| {} | {} | {} | {} | {} |",
                        c[0],
                        c[1],
                        c[2],
                        c[3],
                        render(cited.get(c[0]))
                    )
                });
            out.push_str(replaced.as_deref().unwrap_or(line));
            out.push('\n');
        }
        std::fs::write(page_path(), out).expect("write docs/conformance.md");
    } else {
        for row in stale {
            problems.push(format!(
                "docs/conformance.md:{}: {}'s Tests column is out of date (want {}); rerun with FRONTDESK_BLESS_CONFORMANCE=1",
                row.line,
                row.id,
                render(cited.get(&row.id))
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn citations_are_found_where_tests_make_them() {
    // The scanner itself, on files written here: a doc comment names the function below it, a
    // comment in a body the enclosing function, a module comment the file; a library module
    // counts only from its `#[cfg(test)]`; unknown prefixes and longer words are not IDs.
    let prefixes: BTreeSet<&str> = ["TX", "IDJAG-ISSUE"].into_iter().collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |relative: &str, text: &str| {
        let path = dir.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create dir");
        std::fs::write(&path, text).expect("write");
        path
    };
    let files = [
        write(
            "tests/a.rs",
            "//! Module (TX-01).\n\n/// Doc (TX-02).\n#[tokio::test]\nasync fn first() {\n    helper(); // TX-03, CTX-10\n}\n\nfn second() {\n    let case = \"audience (IDJAG-ISSUE-02)\";\n}\n\nfn refused_idjag_issue_07_08_and_tx_1_ctx_09() {}\n\nfn tx11_glued() {}\n",
        ),
        write(
            "src/lib.rs",
            "/// Rule from TX-04.\npub fn code() {}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn unit() {} // TX-05\n}\n",
        ),
        write(
            "conformance/check.py",
            "def check_token(x):\n    # TX-06\n    pass\n",
        ),
    ];
    let found = citations(dir.path(), &files, &prefixes);
    let places = |id: &str| -> Vec<&str> {
        found
            .get(id)
            .map_or_else(Vec::new, |set| set.iter().map(String::as_str).collect())
    };
    assert_eq!(places("TX-01"), ["tests/a.rs"]);
    assert_eq!(places("TX-02"), ["tests/a.rs::first"]);
    assert_eq!(places("TX-03"), ["tests/a.rs::first"]);
    assert_eq!(places("IDJAG-ISSUE-02"), ["tests/a.rs::second"]);
    assert!(
        places("TX-04").is_empty(),
        "a citation in library code is not a test"
    );
    assert_eq!(places("TX-05"), ["src/lib.rs::unit"]);
    assert_eq!(places("TX-06"), ["conformance/check.py::check_token"]);
    assert_eq!(
        places("IDJAG-ISSUE-07"),
        ["tests/a.rs::refused_idjag_issue_07_08_and_tx_1_ctx_09"]
    );
    assert_eq!(
        places("IDJAG-ISSUE-08"),
        ["tests/a.rs::refused_idjag_issue_07_08_and_tx_1_ctx_09"]
    );
    assert!(!found.contains_key("CTX-10") && !found.contains_key("TX-1"));
    assert!(!found.contains_key("TX-09"), "ctx_09 is not tx_09");
    assert_eq!(places("TX-11"), ["tests/a.rs::tx11_glued"]);
    assert_eq!(found.len(), 9);

    assert_eq!(
        cited_ids("CTX-10 TX-1x (TX-3) ATX-4 TX- tx-5", &prefixes),
        ["TX-3"]
    );
    assert!(looks_like_id("IDJAG-SAML-04") && looks_like_id("TX-10"));
    assert!(!looks_like_id("TX") && !looks_like_id("tx-10") && !looks_like_id("TX-"));
}
