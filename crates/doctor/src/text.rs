//! Text output for 80-column terminals: word wrapping with a hanging indent, and the
//! √ / ‼ / × marks of `linkerd check`-style reports.

/// Width that every text line fits in.
pub const WIDTH: usize = 80;

/// Wraps `text` to [`WIDTH`] columns, every line starting with `indent`.
pub fn wrap(text: &str, indent: &str) -> String {
    wrap_first(text, indent, indent)
}

/// Wraps `text`: the first line starts with `first`, the others with `rest`. Lines after
/// the first line break of `text` (a YAML error's source snippet, say) are kept as they
/// are, each on its own line after `rest`: re-flowing them would garble them.
pub fn wrap_first(text: &str, first: &str, rest: &str) -> String {
    let (head, tail) = match text.split_once('\n') {
        Some((h, t)) => (h, Some(t)),
        None => (text, None),
    };
    let mut out = flow(head, first, rest);
    for line in tail.into_iter().flat_map(str::lines) {
        out.push_str(rest);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn flow(text: &str, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(first);
    let mut line_len = first.chars().count();
    let mut empty = true;
    for word in text.split_whitespace() {
        let w = word.chars().count();
        if !empty && line_len + 1 + w > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from(rest);
            line_len = rest.chars().count();
            empty = true;
        }
        if !empty {
            line.push(' ');
            line_len += 1;
        }
        line.push_str(word);
        line_len += w;
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_80() {
        let text = "word ".repeat(60);
        let out = wrap_first(&text, "× ", "    ");
        for l in out.lines() {
            assert!(l.chars().count() <= WIDTH, "{l:?}");
        }
        assert!(out.starts_with("× word"));
        assert!(out.lines().nth(1).unwrap().starts_with("    word"));
        // A word longer than the line is kept whole.
        let long = "x".repeat(100);
        assert_eq!(wrap(&long, "  ").trim(), long);
    }

    #[test]
    fn snippet_lines_are_kept() {
        // issue 15: lint's YAML error snippets were flowed into one garbled paragraph.
        let text = "not valid YAML: line 1 column 4: unclosed bracket '['\n --> a.yaml:1:4\n  |\n1 | a: [\n  |    ^ unclosed bracket '['";
        let out = wrap_first(text, "× ", "    ");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "× not valid YAML: line 1 column 4: unclosed bracket '['",
                "     --> a.yaml:1:4",
                "      |",
                "    1 | a: [",
                "      |    ^ unclosed bracket '['",
            ]
        );
    }
}
