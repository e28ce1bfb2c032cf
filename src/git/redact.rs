//! Secrets typed on git's command line, blanked out before a command line is recorded
//! (the catalog, `dbguard log`, records pushed to remotes): the values of `-c` and
//! `--config-env` (`http.extraHeader=Authorization: Bearer …`), the user info of URLs
//! (`https://user:token@host/repo`) and the values of query parameters named like a
//! credential (`?access_token=…`, `X-Amz-Signature=…`).

/// What a blanked-out secret reads as.
pub(crate) const REDACTED: &str = "<redacted>";

/// The command line with every secret replaced by [`REDACTED`].
pub(crate) fn redact_argv(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut config_value_next = false;
    for arg in argv {
        if config_value_next {
            config_value_next = false;
            out.push(redact_config_assignment(arg));
            continue;
        }
        if arg == "-c" || arg == "--config-env" {
            config_value_next = true;
            out.push(arg.clone());
        } else if let Some(assignment) = arg.strip_prefix("--config-env=") {
            out.push(format!(
                "--config-env={}",
                redact_config_assignment(assignment)
            ));
        } else if let Some(assignment) = arg.strip_prefix("-c").filter(|a| a.contains('=')) {
            // `-ckey=value`, as git's option parser also accepts it.
            out.push(format!("-c{}", redact_config_assignment(assignment)));
        } else {
            out.push(redact_urls(arg));
        }
    }
    out
}

/// `section.key=value` → `section.key=<redacted>`; anything else (`git switch -c name`)
/// keeps its text, with any URL in it redacted.
fn redact_config_assignment(text: &str) -> String {
    match text.split_once('=') {
        Some((key, _)) if key.contains('.') => format!("{key}={REDACTED}"),
        _ => redact_urls(text),
    }
}

/// Every `scheme://user:password@host…` in `text` loses its user info, and every query
/// parameter named like a credential its value.
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first '/', '?' or '#'; user info is what comes
        // before its last '@'.
        let authority_end = after.find(['/', '?', '#', ' ']).unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(user_end) => {
                out.push_str(REDACTED);
                out.push_str(&authority[user_end..]);
            }
            None => out.push_str(authority),
        }
        let url_end = after[authority_end..]
            .find(char::is_whitespace)
            .map_or(after.len(), |i| authority_end + i);
        out.push_str(&redact_query(&after[authority_end..url_end]));
        rest = &after[url_end..];
    }
    out.push_str(rest);
    out
}

/// `/path?access_token=abc&page=2` → `/path?access_token=<redacted>&page=2`.
fn redact_query(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((name, _)) if is_credential_name(name) => format!("{name}={REDACTED}"),
            _ => parameter.to_string(),
        })
        .collect();
    let mut out = format!("{path}?{}", parameters.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// Query parameter names that carry credentials (OAuth tokens, GitLab's
/// `private_token`, S3's pre-signed URLs, API keys).
fn is_credential_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "passwd",
        "signature",
        "credential",
        "auth",
    ]
    .iter()
    .any(|part| name.contains(part))
        || matches!(
            name.as_str(),
            "key" | "apikey" | "api_key" | "api-key" | "sig" | "pwd" | "pass" | "code"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(args: &[&str]) -> Vec<String> {
        let argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        redact_argv(&argv)
    }

    #[test]
    fn config_values_are_blanked_out() {
        assert_eq!(
            redact(&[
                "dbguard",
                "git",
                "-c",
                "http.extraHeader=Authorization: Bearer s3cr3t",
                "--config-env=http.extraHeader=MY_HEADER",
                "--config-env",
                "credential.helper=HELPER",
                "-cuser.password=hunter2",
                "reset",
                "--hard"
            ]),
            [
                "dbguard",
                "git",
                "-c",
                "http.extraHeader=<redacted>",
                "--config-env=http.extraHeader=<redacted>",
                "--config-env",
                "credential.helper=<redacted>",
                "-cuser.password=<redacted>",
                "reset",
                "--hard"
            ]
        );
        // `switch -c NAME` names a branch: kept.
        assert_eq!(
            redact(&["git", "switch", "-c", "feature"]),
            ["git", "switch", "-c", "feature"]
        );
    }

    #[test]
    fn urls_lose_their_user_info_and_credential_parameters() {
        assert_eq!(
            redact(&[
                "git",
                "pull",
                "https://alice:ghp_tok3n@github.com/o/r.git",
                "main"
            ]),
            [
                "git",
                "pull",
                "https://<redacted>@github.com/o/r.git",
                "main"
            ]
        );
        assert_eq!(
            redact(&["https://oauth2:glpat-x@gitlab.example/o/r?private_token=abc&ref=main#x"]),
            ["https://<redacted>@gitlab.example/o/r?private_token=<redacted>&ref=main#x"]
        );
        assert_eq!(
            redact(&["--url=https://h/p?X-Amz-Signature=ff&X-Amz-Credential=AK&n=1"]),
            ["--url=https://h/p?X-Amz-Signature=<redacted>&X-Amz-Credential=<redacted>&n=1"]
        );
        // Nothing secret: unchanged.
        for plain in [
            "https://github.com/o/r.git",
            "git@github.com:o/r.git",
            "origin",
            "a=b",
            "",
        ] {
            assert_eq!(redact(&[plain]), [plain]);
        }
    }
}
