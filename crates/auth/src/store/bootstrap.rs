//! The first admin token: from `CDS_EVENTS_ADMIN_TOKEN`, or generated and
//! written to a file only its owner can read, for the local CLI.

use super::{TokenStore, new_token};
use crate::{AuthError, Grant, SecretHash, StoredToken, TokenInfo};
use chrono::Utc;
use std::path::{Path, PathBuf};

/// Where a generated admin token is written (mode 0600) for the local CLI.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The id of the admin token given by `CDS_EVENTS_ADMIN_TOKEN`, whose text
/// is whatever the operator chose rather than one of ours.
pub(super) const BOOTSTRAP_ID: &str = "bootstrap";

/// How the store got its first admin token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// The store already had tokens: nothing was done.
    Existing,
    /// `CDS_EVENTS_ADMIN_TOKEN` became the admin token.
    FromEnv,
    /// A token was generated and written to `file`; print it once.
    Generated { token: String, file: PathBuf },
}

impl TokenStore {
    /// Gives an empty store its admin token: `env_token` if set, else a
    /// generated one written to `<data_dir>/admin.token` (0600). A store
    /// that ever had a token is left alone.
    ///
    /// Safe when several instances sharing a backend start at once: the
    /// backend stores the first token only into a store that never had one
    /// (`insert_first_token`), so one instance bootstraps and the others
    /// answer [`Bootstrap::Existing`], with the token in their copy.
    pub async fn bootstrap(
        &self,
        env_token: Option<&str>,
        data_dir: &Path,
    ) -> Result<Bootstrap, AuthError> {
        if self.backend.ever_had_a_token().await? {
            return self.existing().await;
        }
        let admin = vec![Grant::Admin];
        match env_token.map(str::trim).filter(|t| !t.is_empty()) {
            Some(token) => {
                if token.len() < 16 {
                    return Err(AuthError::Invalid(
                        "CDS_EVENTS_ADMIN_TOKEN must be at least 16 characters".into(),
                    ));
                }
                let info = TokenInfo {
                    id: BOOTSTRAP_ID.into(),
                    name: "admin (CDS_EVENTS_ADMIN_TOKEN)".into(),
                    grants: admin,
                    created_at: Utc::now(),
                    expires_at: None,
                    created_by: None,
                };
                let token = StoredToken {
                    info,
                    hash: SecretHash::of(token),
                };
                if !self.insert(&token, "system", true).await? {
                    return self.existing().await;
                }
                Ok(Bootstrap::FromEnv)
            }
            None => {
                let new = new_token("admin (generated)", admin, None, "system")?;
                if !self.insert(&new.token, "system", true).await? {
                    return self.existing().await;
                }
                let file = data_dir.join(ADMIN_TOKEN_FILE);
                // A synced file write: off the async workers.
                let (path, secret) = (file.clone(), new.secret.clone());
                tokio::task::spawn_blocking(move || write_secret_file(&path, &secret))
                    .await
                    .map_err(|e| AuthError::Backend(Box::new(e)))??;
                Ok(Bootstrap::Generated {
                    token: new.secret,
                    file,
                })
            }
        }
    }

    /// Another instance may have bootstrapped since this copy was loaded:
    /// it is reloaded, so that the admin token works here from the start.
    async fn existing(&self) -> Result<Bootstrap, AuthError> {
        self.reload().await?;
        Ok(Bootstrap::Existing)
    }
}

/// Writes a secret readable by its owner only.
fn write_secret_file(path: &Path, secret: &str) -> Result<(), AuthError> {
    use std::io::Write;
    let io = |source| AuthError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    f.write_all(secret.as_bytes()).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

/// Reads the admin token file of a data directory, if there is one.
pub fn read_admin_token(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
