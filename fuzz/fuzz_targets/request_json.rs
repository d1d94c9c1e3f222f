//! What Concourse sends on stdin to check, in and out: decoding never panics, a refused
//! request is explained in one line (CI logs show it as the step's error), and a decoded
//! source validates without panicking.
#![no_main]

use kiln_resource::get::GetRequest;
use kiln_resource::protocol::{CheckRequest, parse_request};
use kiln_resource::put::PutRequest;
use kiln_resource::source::Source;
use libfuzzer_sys::fuzz_target;

fn one_line<T>(result: anyhow::Result<T>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let text = format!("{e:#}");
            assert!(!text.contains('\n'), "a multi-line error: {text}");
            None
        }
    }
}

fn validate(source: &Source) {
    if let Err(e) = source.validate() {
        assert!(!e.to_string().contains('\n'), "{e}");
    }
    let _ = source.mirror();
}

fuzz_target!(|data: &[u8]| {
    if let Some(req) = one_line(parse_request::<CheckRequest>(data)) {
        validate(&req.source);
    }
    if let Some(req) = one_line(parse_request::<GetRequest>(data)) {
        validate(&req.source);
    }
    if let Some(req) = one_line(parse_request::<PutRequest>(data)) {
        validate(&req.source);
    }
});
