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
