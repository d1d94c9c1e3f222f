//! `WWW-Authenticate` values as a registry may send them: parsing never panics, and a
//! Bearer challenge's realm and service survive being written out again and re-read.
#![no_main]

use kiln_registry::Challenge;
use libfuzzer_sys::fuzz_target;

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    if let Some(Challenge::Bearer { realm, service }) = Challenge::parse(&header) {
        let mut again = format!("Bearer realm={}", quote(&realm));
        if let Some(service) = &service {
            again.push_str(&format!(",service={}", quote(service)));
        }
        assert_eq!(Challenge::parse(&again), Some(Challenge::Bearer { realm, service }), "{again}");
    }
});
