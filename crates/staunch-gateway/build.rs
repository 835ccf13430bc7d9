//! Stamps the binary with the git commit it was built from, for
//! `staunch-gateway --version` (`0.1.0 (1a2b3c4d5e6f 2025-01-31)`).
//!
//! The commit is `STAUNCH_GATEWAY_COMMIT` when that is set (a packager who
//! builds from a tarball but knows the commit), else what git says about
//! the checkout this crate sits in, else `unknown` (a crates.io tarball or
//! a Python sdist has no `.git`, and a machine may have no git at all).
//!
//! Cargo runs this again only when the commit can have changed: when HEAD
//! moves (a checkout) or the branch it names moves (a commit), never on an
//! ordinary edit. With no git checkout it never runs again.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=STAUNCH_GATEWAY_COMMIT");
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );

    let commit = match std::env::var("STAUNCH_GATEWAY_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => {
            // Watched even while the answer is `unknown`: the commit that
            // starts tracking this file moves the branch.
            watch_head(&manifest_dir);
            // Only a checkout that tracks this file is ours: an unpacked
            // sdist or crate inside someone else's repository is not.
            git(&manifest_dir, &["ls-files", "build.rs"])
                .and_then(|_| {
                    git(
                        &manifest_dir,
                        &["log", "-1", "--format=%h %cs", "--abbrev=12"],
                    )
                })
                .unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo::rustc-env=STAUNCH_GATEWAY_COMMIT={commit}");
}

/// `git -C dir args...`'s first line of output, when git is there and
/// succeeds with some output.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

/// Asks cargo to run this script again when HEAD or the branch it points
/// at moves. Only paths that exist are named: cargo treats a missing one as
/// changed, which would rebuild the crate on every build.
fn watch_head(dir: &Path) {
    let Some(git_dir) = git(dir, &["rev-parse", "--absolute-git-dir"]) else {
        return;
    };
    let git_dir = PathBuf::from(git_dir);
    // A linked worktree keeps its HEAD in its own git dir and the branches
    // in the common one.
    let common_dir = git(dir, &["rev-parse", "--git-common-dir"])
        .map(|common| {
            if Path::new(&common).is_absolute() {
                PathBuf::from(common)
            } else {
                dir.join(common)
            }
        })
        .unwrap_or_else(|| git_dir.clone());
    watch(&git_dir.join("HEAD"));
    watch(&common_dir.join("packed-refs"));
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        let loose = common_dir.join(&branch);
        if loose.exists() {
            watch(&loose);
        } else if let Some(folder) = loose.parent() {
            // The branch is packed; a commit writes it loose into this
            // folder.
            watch(folder);
        }
    }
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo::rerun-if-changed={}", path.display());
    }
}
