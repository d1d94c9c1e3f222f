//! fsutil's packets as BuildKit's receiver sends them (REQ, FIN, ERR, STAT, DATA, unknown
//! types, any ids, in any order), served by kiln's sender over a small fixed context: it
//! never panics or hangs, sends DATA only for files that were asked for, and FIN only after
//! a FIN.
#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

use kiln_build_task::task::context::{self, ContextEntry};
use kiln_build_task::session::filesync::send_files;
use kiln_build_task::task::patterns::PatternList;
use kiln_proto::fsutil::types::Packet;
use kiln_proto::fsutil::types::packet::PacketType;
use libfuzzer_sys::fuzz_target;

struct Context {
    _dir: tempfile::TempDir,
    entries: Vec<ContextEntry>,
}

fn context() -> &'static Context {
    static CONTEXT: OnceLock<Context> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(dir.path().join("small"), b"0123456789").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/large"), vec![7u8; 150_000]).unwrap();
        std::fs::write(dir.path().join("sub/empty"), b"").unwrap();
        std::os::unix::fs::symlink("small", dir.path().join("link")).unwrap();
        let none = PatternList::default();
        let entries = context::walk(dir.path(), &none, &none).expect("walking the context");
        Context { _dir: dir, entries }
    })
}

const KINDS: [PacketType; 5] =
    [PacketType::PacketStat, PacketType::PacketReq, PacketType::PacketData, PacketType::PacketFin, PacketType::PacketErr];

fuzz_target!(|data: &[u8]| {
    let ctx = context();
    let ids = ctx.entries.len() as u32 + 2;
    let incoming: Vec<Packet> = data
        .chunks_exact(5)
        .take(64)
        .map(|c| {
            let r#type = match KINDS.get(c[0] as usize % 6) {
                Some(kind) => *kind as i32,
                None => c[0] as i32, // an unknown type
            };
            let raw = u32::from_le_bytes([c[1], c[2], c[3], c[4]]);
            let id = if raw & 0x8000_0000 != 0 { raw } else { raw % ids };
            Packet { r#type, stat: None, id, data: Vec::new() }
        })
        .collect();
    let fin_sent = incoming.iter().any(|p| p.r#type == PacketType::PacketFin as i32);
    let requested: HashSet<u32> =
        incoming.iter().filter(|p| p.r#type == PacketType::PacketReq as i32).map(|p| p.id).collect();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let out: Vec<Result<Packet, tonic::Status>> = runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let stream = tokio_stream::iter(incoming.into_iter().map(Ok));
        tokio::spawn(send_files("fuzz".into(), ctx.entries.clone(), stream, tx));
        let mut out = Vec::new();
        let collect = async {
            while let Some(p) = rx.recv().await {
                out.push(p);
            }
        };
        tokio::time::timeout(Duration::from_secs(20), collect).await.expect("the sender hung");
        out
    });

    let mut fins = 0;
    for p in out.iter().flatten() {
        match PacketType::try_from(p.r#type) {
            Ok(PacketType::PacketData) => assert!(requested.contains(&p.id), "DATA for id {} never asked for", p.id),
            Ok(PacketType::PacketFin) => fins += 1,
            Ok(PacketType::PacketStat) => {}
            other => panic!("the sender sent {other:?}"),
        }
    }
    assert!(fins <= 1 && (fins == 0 || fin_sent), "{fins} FIN sent, FIN received: {fin_sent}");
});
