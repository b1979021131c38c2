//! The documentation keeps up with the program: every CLI command has its page in docs/cli/
//! naming each option `--help` prints, and the pages README and the guides link to exist.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The long options a `--help` lists (`--name`), `--help` and `--version` left out.
fn long_options(help: &str) -> Vec<String> {
    let mut found = vec![];
    for line in help.lines() {
        let line = line.trim_start();
        let Some(start) = line.find("--") else {
            continue;
        };
        // Option lines begin with `-x, --name` or `--name`.
        if !(line.starts_with("--") || line.starts_with('-') && start <= 4) {
            continue;
        }
        let name: String = line[start + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if !name.is_empty() && name != "help" && name != "version" {
            found.push(format!("--{name}"));
        }
    }
    found
}

/// The subcommands a `--help` lists under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

fn page(command: &str) -> String {
    let path = root().join("docs/cli").join(format!("{command}.md"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("`pentimento {command}` has no page {}: {e}", path.display()))
}

#[test]
fn every_cli_command_has_a_page_naming_each_of_its_options() {
    let commands = subcommands(&help(&[]));
    assert!(commands.len() >= 8, "commands: {commands:?}");
    let index = std::fs::read_to_string(root().join("docs/cli/README.md")).unwrap();
    let mut missing = vec![];
    for command in &commands {
        assert!(
            index.contains(&format!("{command}.md")),
            "docs/cli/README.md does not link {command}.md"
        );
        let text = page(command);
        let mut helps = vec![help(&[command])];
        // A command with subcommands of its own (models): theirs too, on the same page.
        for sub in subcommands(&helps[0]) {
            assert!(
                text.contains(&sub),
                "docs/cli/{command}.md does not name `{command} {sub}`"
            );
            helps.push(help(&[command, &sub]));
        }
        for option in helps.iter().flat_map(|h| long_options(h)) {
            if !text.contains(&option) {
                missing.push(format!("{command} {option}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "options without a word in docs/cli: {missing:?}"
    );
}

#[test]
fn the_option_reader_finds_options_and_only_options() {
    let help = "Usage: x [OPTIONS]\n\nOptions:\n      --model <MODEL>\n          A model --not-this\n  -s, --seed <SEED>\n  -h, --help\n";
    assert_eq!(long_options(help), ["--model", "--seed"]);
}

/// Relative links in the docs and README lead to files that exist.
#[test]
fn relative_links_in_the_docs_resolve() {
    let mut pages: Vec<PathBuf> = vec![root().join("README.md")];
    for dir in [root().join("docs"), root().join("docs/cli")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    let mut broken = vec![];
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for target in markdown_links(&text) {
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let file = target.split('#').next().unwrap_or_default();
            let dir = page.parent().unwrap_or(Path::new("."));
            if !file.is_empty() && !dir.join(file).exists() {
                broken.push(format!("{}: {target}", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:?}");
}

/// The targets of `[text](target)` and `![alt](target)` links.
fn markdown_links(text: &str) -> Vec<String> {
    let mut links = vec![];
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        match after.find(')') {
            Some(end) => {
                let target = after[..end].split_whitespace().next().unwrap_or_default();
                if !target.is_empty() {
                    links.push(target.to_string());
                }
                rest = &after[end..];
            }
            None => break,
        }
    }
    links
}
