//! The README is a contract: every metric the exporter can expose and every
//! flag it takes is documented there.

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn every_metric_is_in_the_readme() {
    let readme = read("README.md");
    let source = read("src/metrics.rs");
    let names: Vec<&str> =
        regex::Regex::new(r#""(aws_[a-z_]+)""#).unwrap().captures_iter(&source).map(|c| c.get(1).unwrap().as_str()).collect();
    assert!(names.len() > 40, "{names:?}");
    let missing: Vec<&&str> = names.iter().filter(|n| !readme.contains(**n)).collect();
    assert!(missing.is_empty(), "metrics missing from README.md: {missing:?}");
}

#[test]
fn every_flag_is_in_the_readme() {
    let readme = read("README.md");
    let source = read("src/config.rs");
    let flags: Vec<&str> =
        regex::Regex::new(r#"long = "([a-z.\-]+)""#).unwrap().captures_iter(&source).map(|c| c.get(1).unwrap().as_str()).collect();
    // `simulate` is a hidden test helper; its listen flags are not user-facing.
    let user_facing: Vec<&&str> = flags.iter().filter(|f| !f.ends_with(".listen")).collect();
    assert!(user_facing.len() > 15, "{flags:?}");
    let missing: Vec<&&&str> = user_facing.iter().filter(|f| !readme.contains(&format!("--{f}"))).collect();
    assert!(missing.is_empty(), "flags missing from README.md: {missing:?}");
}

/// The deployment sections' commands are the ones tests run: every ```sh
/// block there carries `<!-- tested-by: tests/FILE.rs -->` (or says why it
/// cannot run in CI with `<!-- not-run: REASON -->`), and the named test file
/// reads its blocks from README.md through `common::readme_blocks`.
#[test]
fn every_deployment_command_is_run_by_a_test() {
    let readme = read("README.md");
    let sections = ["## Running on EC2", "## Running in a container", "## Running on Kubernetes"];
    let mut marked = 0;
    for heading in sections {
        let start = readme.find(&format!("{heading}\n")).unwrap_or_else(|| panic!("README.md has no section {heading}"));
        let body = &readme[start + heading.len()..];
        let body = &body[..body.find("\n## ").unwrap_or(body.len())];
        let lines: Vec<&str> = body.lines().collect();
        for (i, _) in lines.iter().enumerate().filter(|(_, l)| l.trim() == "```sh") {
            let marker = i.checked_sub(1).map(|j| lines[j].trim()).unwrap_or("");
            if let Some(reason) = marker.strip_prefix("<!-- not-run: ").and_then(|m| m.strip_suffix(" -->")) {
                assert!(!reason.trim().is_empty(), "{heading}: a not-run block says why");
                continue;
            }
            let test = marker
                .strip_prefix("<!-- tested-by: ")
                .and_then(|m| m.strip_suffix(" -->"))
                .unwrap_or_else(|| panic!("{heading}: the ```sh block at line {} of the section has no tested-by marker", i + 1));
            let source = read(test);
            assert!(
                source.contains(&format!("\"{test}\"")) && source.contains("readme_blocks("),
                "{test} does not read its README blocks through common::readme_blocks(\"{test}\")"
            );
            marked += 1;
        }
    }
    assert!(marked >= 6, "only {marked} tested deployment blocks");
}
