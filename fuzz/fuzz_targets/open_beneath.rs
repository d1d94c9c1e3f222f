//! Paths opened beneath a folder (`kiln_image::confined`): a tree of a few folders, files and
//! links (relative or absolute, through `..`, at a folder beside the root, at the host's
//! `/`), then a path of a few parts opened in it. Whatever they are, what opens is the root
//! or something in it, never the folder beside it or what that holds; and `openat2`'s
//! answer and the walk of one component at a time (the fallback for kernels without it)
//! agree: both open the same file, or both refuse, and agree on whether it was because the
//! path points outside.
#![no_main]

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use arbitrary::Arbitrary;
use kiln_image::confined::{Plant, is_outside, open_beneath, plant, walk_beneath};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Part {
    A,
    B,
    C,
    Dot,
    DotDot,
    Empty,
    Outside,
}

fn part(p: Part) -> &'static str {
    match p {
        Part::A => "a",
        Part::B => "b",
        Part::C => "c",
        Part::Dot => ".",
        Part::DotDot => "..",
        Part::Empty => "",
        Part::Outside => "outside",
    }
}

fn join(parts: &[Part]) -> String {
    parts.iter().take(8).map(|&p| part(p)).collect::<Vec<_>>().join("/")
}

#[derive(Arbitrary, Debug)]
enum Kind {
    File,
    Dir,
    /// `absolute`: the target is made absolute, from the sandbox (so `outside` is the folder
    /// beside the root) or from the host's `/`.
    Link {
        absolute: Option<bool>,
        target: Vec<Part>,
    },
}

#[derive(Arbitrary, Debug)]
struct Node {
    /// Names only (`.`, `..` and empty parts are dropped): where in the root it is made.
    path: Vec<Part>,
    kind: Kind,
}

#[derive(Arbitrary, Debug)]
struct Input {
    nodes: Vec<Node>,
    open: Vec<Part>,
}

/// Every inode under `dir`, links not followed.
fn inodes(dir: &Path, out: &mut HashSet<(u64, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else { continue };
        out.insert((meta.dev(), meta.ino()));
        if meta.is_dir() {
            inodes(&entry.path(), out);
        }
    }
}

fuzz_target!(|input: Input| {
    let sandbox = tempfile::tempdir().unwrap();
    let root = sandbox.path().join("root");
    let outside = sandbox.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("a"), "outside").unwrap();

    for node in input.nodes.iter().take(12) {
        let names: Vec<&str> =
            node.path.iter().take(4).map(|&p| part(p)).filter(|n| !n.is_empty() && *n != "." && *n != "..").collect();
        if names.is_empty() {
            continue;
        }
        let what = match &node.kind {
            Kind::File => Plant::File,
            Kind::Dir => Plant::Dir,
            Kind::Link { absolute, target } => Plant::Link(match absolute {
                None => PathBuf::from(join(target)),
                Some(true) => PathBuf::from(format!("{}/{}", sandbox.path().display(), join(target))),
                Some(false) => PathBuf::from(format!("/{}", join(target))),
            }),
        };
        // Made without following a link the tree already holds (see `plant`).
        plant(&root, &names, what);
    }

    let mut allowed = HashSet::new();
    inodes(&root, &mut allowed);
    let root_meta = std::fs::metadata(&root).unwrap();
    allowed.insert((root_meta.dev(), root_meta.ino()));
    let mut forbidden = HashSet::new();
    inodes(&outside, &mut forbidden);
    let outside_meta = std::fs::metadata(&outside).unwrap();
    forbidden.insert((outside_meta.dev(), outside_meta.ino()));

    let path = join(&input.open);
    let path = Path::new(&path);
    let fast = open_beneath(&root, path);
    let walked = walk_beneath(&root, path);
    match (&fast, &walked) {
        (Ok(a), Ok(b)) => {
            let (a, b) = (a.metadata().unwrap(), b.metadata().unwrap());
            assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "{path:?}: openat2 and the walk opened different files");
            let opened = (a.dev(), a.ino());
            assert!(!forbidden.contains(&opened), "{path:?} opened something beside the root");
            assert!(allowed.contains(&opened), "{path:?} opened something that is not in the root");
        }
        (Err(a), Err(b)) => {
            assert_eq!(is_outside(a), is_outside(b), "{path:?}: openat2 said {a}, the walk {b}");
        }
        _ => panic!("{path:?}: openat2 gave {fast:?}, the walk {walked:?}"),
    }
});
