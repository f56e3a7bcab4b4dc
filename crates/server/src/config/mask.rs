//! Secrets in what the configuration prints: a database URL's password
//! never reaches `cds-events config`, logs or errors.

/// `url` with its password replaced by `***`, in either form libpq takes:
/// `postgres://user:password@host/db` or `host=… password=… dbname=…`.
pub fn mask_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{tail}");
        }
        // A password may also come as a query parameter.
        return mask_key_values(url, '&');
    }
    mask_key_values(url, ' ')
}

fn mask_key_values(s: &str, sep: char) -> String {
    s.split(sep)
        .map(|part| match part.split_once('=') {
            Some((k, _)) if k.trim_start_matches('?').ends_with("password") => {
                format!("{k}=***")
            }
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(&sep.to_string())
}
