//! What the transport trusts from a server: any `Location` or `Link` target and any token
//! realm, resolved against a registry's base URL as the client does. Properties: credentials
//! are attached only when the target's scheme, host and port are the registry's; https never
//! becomes http; a realm gets the password only over https or from a plain-http registry;
//! a URL shown in a message carries no query and no user info.
#![no_main]

use kiln_registry::scope::{self, Credentials, Refusal, Url};
use libfuzzer_sys::fuzz_target;

fn origin(url: &Url) -> Option<(String, String, u16)> {
    Some((url.scheme().to_string(), url.host_str()?.to_ascii_lowercase(), url.port_or_known_default()?))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (first, target, realm) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let scheme = if first.starts_with('s') { "https" } else { "http" };
    let Ok(base) = Url::parse(&format!("{scheme}://{}/", first.get(1..).unwrap_or(""))) else { return };
    if let Ok(url) = base.join(target) {
        match scope::for_target(&base, &url) {
            Ok(Credentials::Attach) => {
                assert_eq!(origin(&url), origin(&base), "credentials for {url} from {base}");
                assert!(origin(&url).is_some());
            }
            Ok(Credentials::Withhold) => assert!(!(base.scheme() == "https" && url.scheme() == "http")),
            Err(Refusal::Downgrade) => assert!(base.scheme() == "https" && url.scheme() == "http"),
            Err(_) => {}
        }
        let shown = scope::shown(&url);
        assert!(!shown.contains('?'), "{shown}");
        if let Ok(again) = Url::parse(&shown) {
            assert!(again.username().is_empty() && again.password().is_none(), "{shown}");
        }
    }
    if let Ok(realm) = Url::parse(realm)
        && scope::for_realm(&base, &realm).is_ok()
    {
        assert!(realm.scheme() == "https" || (realm.scheme() == "http" && base.scheme() == "http"), "{realm} from {base}");
    }
});
