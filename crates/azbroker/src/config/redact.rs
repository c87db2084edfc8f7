//! Config errors never show the value of a secret-bearing key. TOML's own syntax errors quote the
//! offending source line, which may be `client_secret = "…`; this module describes such an error
//! by line and column and quotes the line only after redacting every secret value in the file.
//! It must never return text taken from a secret value.

use std::ops::Range;

/// Shown instead of a secret value.
const REDACTED: &str = "<redacted>";

/// True for a key whose value is itself a secret (`client_secret`, and any later
/// `*secret*`/`*password*` key); keys naming a file (`*_file`) hold a path, not the secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    (k.contains("secret") || k.contains("password")) && !k.ends_with("_file")
}

/// A TOML syntax error in `text`: `message` at `span`, with the line quoted after redaction.
pub fn syntax_error(text: &str, message: &str, span: Option<Range<usize>>) -> String {
    let (lines, values) = redacted_lines(text);
    let mut message = message.trim().to_owned();
    for v in values.iter().filter(|v| v.len() >= 3) {
        message = message.replace(v.as_str(), REDACTED);
    }
    let Some(span) = span else { return format!("not valid TOML: {message}") };
    let start = span.start.min(text.len());
    let line = text.as_bytes()[..start].iter().filter(|b| **b == b'\n').count();
    let column = start - text[..start].rfind('\n').map_or(0, |i| i + 1);
    let quoted = lines.get(line).map_or("", String::as_str);
    format!("not valid TOML at line {}, column {}: {message}\n      | {quoted}", line + 1, column + 1)
}

/// Every line of `text` with the value of each secret-bearing key replaced (multi-line string
/// values entirely), and the raw value texts that were replaced.
fn redacted_lines(text: &str) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut values = Vec::new();
    let mut open_delimiter: Option<&str> = None;
    for line in text.lines() {
        if let Some(delim) = open_delimiter {
            if line.contains(delim) {
                open_delimiter = None;
            }
            values.push(line.trim().trim_matches(['"', '\'']).to_owned());
            lines.push(REDACTED.to_owned());
            continue;
        }
        match secret_assignment(line) {
            Some(eq) => {
                let value = line[eq + 1..].trim();
                open_delimiter =
                    ["\"\"\"", "'''"].into_iter().find(|d| value.starts_with(d) && !value[3..].contains(d));
                values.push(value.trim_matches(['"', '\'', ',', '}', ' ']).to_owned());
                lines.push(format!("{} {REDACTED}", &line[..=eq]));
            }
            None => lines.push(line.to_owned()),
        }
    }
    (lines, values)
}

/// The byte offset of the `=` after a secret-bearing key on this line (bare, quoted, dotted or
/// inside an inline table), if there is one.
fn secret_assignment(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let is_key_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let mut i = 0;
    while i < bytes.len() {
        if !is_key_char(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_key_char(bytes[i]) {
            i += 1;
        }
        let mut j = i;
        while j < bytes.len() && matches!(bytes[j], b'"' | b'\'' | b' ' | b'\t') {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'=' && is_secret_key(&line[start..i]) {
            return Some(j);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every config error output (log, reload answer, CLI) prints for `text`.
    fn error_for(text: &str) -> String {
        crate::config::Config::parse(text, None).unwrap_err().to_string()
    }

    #[test]
    fn a_syntax_error_on_a_secret_line_never_shows_the_value() {
        let cases = [
            "[logins.app]\nclient_secret = \"hunter2-value\n",
            "[logins.app]\nclient_secret = \"hunter2-value\" trailing\n",
            "[logins.app]\n\"client_secret\" = hunter2-value\n",
            "[logins]\napp = { kind = \"x\", client_secret = \"hunter2-value\" oops }\n",
            "[logins.app]\nclient_secret = \"\"\"\nhunter2-value\n\"\"\" x\n",
            "logins.app.client_secret = 'hunter2-value\n",
        ];
        for text in cases {
            let ours = error_for(text);
            assert!(!ours.contains("hunter2"), "{text} → {ours}");
            assert!(ours.contains("not valid TOML at line") && ours.contains(REDACTED), "{ours}");
        }
    }

    #[test]
    fn other_lines_are_quoted_as_written() {
        let text = "[logins.app]\nclient_secret = \"hunter2-value\"\nclient_id = 12x\n";
        let ours = error_for(text);
        assert!(ours.contains("line 3") && ours.contains("client_id = 12x"), "{ours}");
        assert!(!ours.contains("hunter2"), "{ours}");
        assert!(is_secret_key("client_secret") && is_secret_key("Password"));
        assert!(!is_secret_key("client_secret_file") && !is_secret_key("client_id"));
    }
}
