//! One malformed config per error kind, in `tests/malformed/`. The first
//! line of each file is `# expect: MESSAGE`: the exact error the file must
//! produce, `file:line:column: message` with the file named by its base name.

use std::path::Path;

use toolstack::config::parse_config;

#[test]
fn each_malformed_file_gives_its_expected_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/malformed");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cfg"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 30);
    let mut failures = Vec::new();
    for path in &paths {
        let name = path.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name}: first line must be `# expect: MESSAGE`"));
        match parse_config(&text, name, &[] as &[&str]) {
            Ok(_) => failures.push(format!("{name}: accepted, expected {expected}")),
            Err(e) if e.to_string() != expected => {
                failures.push(format!("{name}:\n  expected {expected}\n  got      {e}"))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
