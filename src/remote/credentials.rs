//! AWS credentials, region and endpoint the standard way: the `AWS_*` environment first,
//! then the shared files (`~/.aws/credentials`, `~/.aws/config`, or the paths in
//! `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE`) for the profile in `AWS_PROFILE`
//! (else the remote's `profile` setting, else `default`). The values never leave this
//! module except into the S3 client: [`Credentials::describe`] names only where they
//! came from.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// An access key pair (and session token) and where it was found.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: Option<String>,
    pub(crate) source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret, not even in a debug print.
        write!(f, "Credentials(from {})", self.source)
    }
}

impl Credentials {
    /// Where the credentials came from, for `dbguard remote list` and error messages.
    pub(crate) fn describe(&self) -> &str {
        &self.source
    }
}

/// What the AWS environment and files say, for one profile.
#[derive(Debug, Default)]
pub(crate) struct AwsSettings {
    pub(crate) credentials: Option<Credentials>,
    pub(crate) region: Option<String>,
    pub(crate) endpoint: Option<String>,
}

/// An environment variable that is set and not blank.
pub(super) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn home_file(var: &str, default: &str) -> Option<PathBuf> {
    env(var)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(default)))
}

/// The sections of an INI file: `[name]` → key → value (keys lowercased, values trimmed).
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim().to_string());
            continue;
        }
        if let (Some(section), Some((key, value))) = (&current, line.split_once('=')) {
            sections
                .entry(section.clone())
                .or_default()
                .insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    sections
}

fn read_ini(path: &Option<PathBuf>) -> BTreeMap<String, BTreeMap<String, String>> {
    path.as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|text| parse_ini(&text))
        .unwrap_or_default()
}

/// Resolve credentials, region and endpoint; `profile` is the remote's own setting,
/// which `AWS_PROFILE` overrides as it does for every AWS tool.
pub(crate) fn resolve(profile: Option<&str>) -> AwsSettings {
    let profile = env("AWS_PROFILE")
        .or_else(|| profile.map(str::to_string))
        .unwrap_or_else(|| "default".to_string());
    let credentials_path = home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
    let config_path = home_file("AWS_CONFIG_FILE", ".aws/config");
    let credentials_file = read_ini(&credentials_path);
    let config_file = read_ini(&config_path);
    // In the config file a profile's section is `[profile NAME]`, except `[default]`.
    let config_section = config_file.get(&format!("profile {profile}")).or_else(|| {
        (profile == "default")
            .then(|| config_file.get("default"))
            .flatten()
    });
    let from_file = |section: Option<&BTreeMap<String, String>>, path: &Option<PathBuf>| {
        let section = section?;
        Some(Credentials {
            access_key_id: section.get("aws_access_key_id")?.clone(),
            secret_access_key: section.get("aws_secret_access_key")?.clone(),
            session_token: section.get("aws_session_token").cloned(),
            source: format!(
                "profile {profile} in {}",
                path.as_ref()
                    .map_or(String::new(), |p| p.display().to_string())
            ),
        })
    };
    let credentials = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret_access_key)) => Some(Credentials {
            access_key_id,
            secret_access_key,
            session_token: env("AWS_SESSION_TOKEN"),
            source: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment".into(),
        }),
        _ => from_file(credentials_file.get(&profile), &credentials_path)
            .or_else(|| from_file(config_section, &config_path)),
    };
    let region = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| config_section.and_then(|s| s.get("region").cloned()));
    let endpoint = env("AWS_ENDPOINT_URL_S3")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| config_section.and_then(|s| s.get("endpoint_url").cloned()));
    AwsSettings {
        credentials,
        region,
        endpoint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_and_keys() {
        let text = "# comment\n[default]\naws_access_key_id = AK\n aws_secret_access_key=SK \n\
                    [profile lab]\nregion = eu-1\nendpoint_url = http://127.0.0.1:9000\n";
        let ini = parse_ini(text);
        assert_eq!(ini["default"]["aws_access_key_id"], "AK");
        assert_eq!(ini["default"]["aws_secret_access_key"], "SK");
        assert_eq!(ini["profile lab"]["endpoint_url"], "http://127.0.0.1:9000");
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let credentials = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "very-secret".into(),
            session_token: Some("token".into()),
            source: "the environment".into(),
        };
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("very-secret") && !shown.contains("AKIDEXAMPLE"));
    }
}
