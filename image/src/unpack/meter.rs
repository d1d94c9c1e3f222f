//! A bound on what the tar reader keeps in memory.
//!
//! The `tar` crate reads PAX extended headers and GNU long names whole, into memory,
//! whatever size their header claims. Entry bodies we stream ourselves; everything else
//! the tar reader reads between two entries (headers, padding, extensions) is counted
//! here and refused past [`MAX_OVERHEAD`], so a hostile layer cannot make us hold
//! gigabytes of "path name".

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// What the tar reader may read between two entries: Go's `archive/tar` caps PAX
/// headers and long names at 1 MiB each; a path, a link target and a PAX header fit.
pub const MAX_OVERHEAD: u64 = 4 << 20;

/// Shared between the reader handed to the tar crate and the loop over entries.
#[derive(Default)]
pub struct Meter {
    in_body: Cell<bool>,
    overhead: Cell<u64>,
}

impl Meter {
    /// Entering an entry's body (read by us, streamed) or leaving it.
    pub fn body(&self, in_body: bool) {
        self.in_body.set(in_body);
        if in_body {
            self.overhead.set(0);
        }
    }
}

/// The layer stream, metered.
pub struct Metered<R> {
    pub inner: R,
    pub meter: Rc<Meter>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.meter.in_body.get() {
            let overhead = self.meter.overhead.get() + n as u64;
            self.meter.overhead.set(overhead);
            if overhead > MAX_OVERHEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "more than {MAX_OVERHEAD} bytes of headers before an entry (oversized PAX header or long name)"
                    ),
                ));
            }
        }
        Ok(n)
    }
}
