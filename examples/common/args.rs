//! Command-line flags as the examples take them: `--name value` or
//! `--name=value`.

/// `arg` split into the flag and the value written inline with `=`, if any.
pub(crate) fn split(arg: &str) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
        None => (arg.to_owned(), None),
    }
}

/// The value of flag `name`: the one written inline, else the next
/// argument; an error naming the flag when there is none.
pub(crate) fn value(
    inline: &Option<String>,
    rest: &mut impl Iterator<Item = String>,
    name: &str,
) -> Result<String, String> {
    inline
        .clone()
        .or_else(|| rest.next())
        .ok_or(format!("{name} needs a value"))
}

/// The parsed arguments, or the usage printed and the process ended: for
/// `--help` (an empty message) on stdout, with success; otherwise the error
/// and the usage on stderr, with status 2.
pub(crate) fn or_exit<T>(parsed: Result<T, String>, usage: &str) -> T {
    match parsed {
        Ok(a) => a,
        Err(msg) if msg.is_empty() => {
            print!("{usage}");
            std::process::exit(0);
        }
        Err(msg) => {
            eprint!("error: {msg}\n\n{usage}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn inline_and_separate_values() {
        use super::{split, value};
        let mut rest = vec!["3000".to_owned()].into_iter();
        let (flag, inline) = split("--port");
        assert_eq!(flag, "--port");
        assert_eq!(value(&inline, &mut rest, "--port").unwrap(), "3000");
        let (flag, inline) = split("--addr=127.0.0.1:1");
        assert_eq!(flag, "--addr");
        assert_eq!(value(&inline, &mut rest, "--addr").unwrap(), "127.0.0.1:1");
        assert_eq!(
            value(&None, &mut rest, "--port").unwrap_err(),
            "--port needs a value"
        );
    }
}
