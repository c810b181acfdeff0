//! Reading and parsing a config file into the runtime model, in stages that each report every
//! problem they find: YAML syntax, then the file's shape (keys and types), then values and
//! references. A stage runs only when the one before found nothing, so a problem is reported
//! once, by its cause, never again through what it breaks later.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::diagnostics::{ConfigError, ConfigIssue, sort};
use super::file::ConfigFile;
use super::runtime::GatewayConfig;
use super::yaml_tree::{self, Node, Pos};
use super::{report, shape, syntax, validate};

/// Largest config file accepted: a config is a few KiB; anything huge is a mistake or an attack.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Reads, parses and validates `path`.
pub fn load_file(path: &Path) -> Result<GatewayConfig, ConfigError> {
    let text = read_text(path)?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    load_str(&text, base_dir, path)
}

/// The text of a config file, within the size limit.
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    let unreadable =
        |e: std::io::Error| ConfigError::single("", None, format!("cannot read the file: {e}"));
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::single(
            "",
            None,
            "the file is larger than 4 MiB",
        ));
    }
    std::fs::read_to_string(path).map_err(unreadable)
}

/// Parses and validates YAML text. `base_dir` anchors relative paths; `source` is for display.
pub fn load_str(text: &str, base_dir: &Path, source: &Path) -> Result<GatewayConfig, ConfigError> {
    let root = yaml_tree::parse(text).map_err(|e| ConfigError {
        issues: vec![syntax::issue(text, &e)],
    })?;
    let mut issues = shape::check(root.as_ref());
    if !issues.is_empty() {
        sort(&mut issues);
        return Err(ConfigError { issues });
    }
    // The shape check accepts what the deserializer reads; should they ever disagree, the
    // deserializer's objection is still reported at its place.
    let file: ConfigFile = serde_saphyr::from_str(text).map_err(|e| ConfigError {
        issues: vec![deserialize_issue(&e, root.as_ref())],
    })?;
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    match validate::build(&file, base_dir, source.to_path_buf(), hash) {
        Ok(mut config) => {
            report::locate(text, &mut config.warnings);
            sort(&mut config.warnings);
            Ok(config)
        }
        Err(mut e) => {
            report::locate(text, &mut e.issues);
            sort(&mut e.issues);
            Err(e)
        }
    }
}

fn deserialize_issue(e: &serde_saphyr::Error, root: Option<&Node>) -> ConfigIssue {
    // The rendered error is `error: line L column C: message` and then a snippet.
    let first = e.to_string();
    let first = first.lines().next().unwrap_or_default();
    let message = first.strip_prefix("error: ").unwrap_or(first);
    let message = match message.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(message, |(_, m)| m),
        None => message,
    };
    let issue = ConfigIssue::error("", format!("cannot be read: {message}"));
    match e.location().filter(|l| l.line() > 0) {
        Some(l) => {
            let pos = Pos {
                line: u32::try_from(l.line()).unwrap_or(u32::MAX),
                col: u32::try_from(l.column()).unwrap_or(u32::MAX),
            };
            ConfigIssue {
                path: root.map(|r| yaml_tree::path_at(r, pos)).unwrap_or_default(),
                ..issue.at_line_col(l.line(), l.column())
            }
        }
        None => issue,
    }
}

/// The loader is total: any text, YAML or not, ends in a config or a `ConfigError`.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const SHIPPED: &str = include_str!("../../gateway.yaml");

    /// YAML-ish fragments: the config's own keys, indentation, anchors, tags and scalars of
    /// every type in places where another type is expected.
    fn yamlish() -> impl Strategy<Value = String> {
        let token = prop::sample::select(vec![
            "listeners:",
            "routes:",
            "upstreams:",
            "identity:",
            "privacy:",
            "tiktok:",
            "webhooks:",
            "state:",
            "- ",
            "  ",
            "    ",
            "\n",
            "\n",
            ": ",
            "name: a",
            "path: /x",
            "kind: proxy",
            "auth: none",
            "addr: 127.0.0.1:0",
            "timeout: 5s",
            "timeout: -1s",
            "max_body: 1MiB",
            "rate: 99999999999999999999/s",
            "&a ",
            "*a",
            "<<: *a",
            "!!binary ",
            "!!str ",
            "{",
            "}",
            "[",
            "]",
            ",",
            "\"",
            "'",
            "~",
            "null",
            "true",
            "0x10",
            "1e999",
            ".nan",
            "-",
            "#",
            "|",
            ">",
            "---",
            "...",
            "\t",
            "%YAML 1.2",
            "\u{feff}",
            "é",
        ]);
        prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
    }

    /// The shipped config cut at a random point with random text spliced in.
    fn mutated_shipped() -> impl Strategy<Value = String> {
        (
            0..=SHIPPED.len(),
            0..=SHIPPED.len(),
            "\\PC{0,16}|[ :\\-\\n]{0,8}",
        )
            .prop_map(|(a, b, insert)| {
                let (a, b) = (a.min(b), a.max(b));
                let floor = |mut i: usize| {
                    while !SHIPPED.is_char_boundary(i) {
                        i -= 1;
                    }
                    i
                };
                format!("{}{insert}{}", &SHIPPED[..floor(a)], &SHIPPED[floor(b)..])
            })
    }

    fn load(text: &str) {
        // A base directory that does not exist: nothing relative can be read from disk.
        let _ = load_str(
            text,
            Path::new("/nonexistent-config-property-base"),
            Path::new("generated.yaml"),
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            load(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn yamlish_text_never_panics(text in yamlish()) {
            load(&text);
        }

        #[test]
        fn mutated_shipped_config_never_panics(text in mutated_shipped()) {
            load(&text);
        }
    }
}
