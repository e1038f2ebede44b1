//! What a container of an image runs, as containerd's CRI plugin derives it from the image
//! config and the container spec: argv by the four-case rule, the environment, the working
//! directory and the user. Pure: the caller reads the image's `/etc/passwd` and `/etc/group`.

/// `PATH` every container starts with before the image's env (containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Neither the container nor the image names a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no command specified")]
pub struct NoCommand;

/// The process' argv: `command` replaces the image's Entrypoint (and drops its Cmd), `args`
/// replaces the Cmd. An empty list counts as unset; an Entrypoint of `[""]` is none.
pub fn argv(
    entrypoint: &[String],
    cmd: &[String],
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, NoCommand> {
    let out: Vec<String> = if !command.is_empty() {
        command.iter().chain(args).cloned().collect()
    } else {
        let ep: &[String] = if entrypoint.len() == 1 && entrypoint[0].is_empty() {
            &[]
        } else {
            entrypoint
        };
        let rest = if args.is_empty() { cmd } else { args };
        ep.iter().chain(rest).cloned().collect()
    };
    if out.first().is_none_or(|a| a.is_empty()) {
        return Err(NoCommand);
    }
    Ok(out)
}

/// The environment: `PATH`, `HOSTNAME`, the image's `Env` (`K=V` strings), then the
/// container's own; a name already present is replaced in place, a new one appended.
pub fn env(
    hostname: &str,
    image_env: &[String],
    container_env: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOSTNAME".into(), hostname.into()),
    ];
    let mut set = |k: &str, v: &str| match out.iter_mut().find(|(n, _)| n == k) {
        Some(slot) => slot.1 = v.to_owned(),
        None => out.push((k.to_owned(), v.to_owned())),
    };
    for kv in image_env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if !k.is_empty() {
            set(k, v);
        }
    }
    for (k, v) in container_env {
        set(k, v);
    }
    out
}

/// The working directory: the container's `workingDir`, else the image's, else `/`.
pub fn working_dir(container: Option<&str>, image: Option<&str>) -> String {
    container
        .filter(|d| !d.is_empty())
        .or(image.filter(|d| !d.is_empty()))
        .unwrap_or("/")
        .to_owned()
}

/// The user part the kubelet passes when `runAsUser` is unset: the image `User` before `:`,
/// as a uid when numeric, else as a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageUser {
    /// No `User` in the image (root).
    None,
    /// A numeric uid.
    Uid(u32),
    /// A user name, looked up in the image's `/etc/passwd`.
    Name(String),
}

/// Parses the image config's `User`.
pub fn image_user(user: Option<&str>) -> ImageUser {
    let part = user.unwrap_or("").split(':').next().unwrap_or("");
    if part.is_empty() {
        return ImageUser::None;
    }
    match part.parse::<u32>() {
        Ok(uid) => ImageUser::Uid(uid),
        Err(_) => ImageUser::Name(part.to_owned()),
    }
}

/// A named user that the image's `/etc/passwd` lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no users found")]
pub struct NoUsersFound;

/// The resolved identity of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessUser {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary groups: the image's `/etc/group` entries listing the user, then the
    /// primary gid (without duplicates). The pod's `fsGroup` and `supplementalGroups` are
    /// added by the caller.
    pub groups: Vec<u32>,
}

/// The process' user: `runAsUser` when set, else the image user; the gid is `runAsGroup` when
/// set, else the passwd entry's (0 when a uid has none). A name absent from `passwd` fails.
pub fn resolve_user(
    image: &ImageUser,
    run_as_user: Option<u32>,
    run_as_group: Option<u32>,
    passwd: &str,
    group: &str,
) -> Result<ProcessUser, NoUsersFound> {
    let entries: Vec<(&str, u32, u32)> = passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((
                *f.first()?,
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect();
    let (uid, name, passwd_gid) = match (run_as_user, image) {
        (Some(uid), _) => by_uid(&entries, uid),
        (None, ImageUser::None) => by_uid(&entries, 0),
        (None, ImageUser::Uid(uid)) => by_uid(&entries, *uid),
        (None, ImageUser::Name(n)) => {
            let (name, uid, gid) = entries
                .iter()
                .find(|(name, _, _)| name == n)
                .ok_or(NoUsersFound)?;
            (*uid, Some(*name), *gid)
        }
    };
    let gid = run_as_group.unwrap_or(passwd_gid);
    let mut groups = Vec::new();
    if let Some(name) = name {
        for l in group.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = l.split(':').collect();
            let (Some(g), Some(members)) = (f.get(2).and_then(|g| g.parse().ok()), f.get(3)) else {
                continue;
            };
            if members.split(',').any(|m| m == name) && !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    Ok(ProcessUser { uid, gid, groups })
}

fn by_uid<'a>(entries: &[(&'a str, u32, u32)], uid: u32) -> (u32, Option<&'a str>, u32) {
    match entries.iter().find(|(_, u, _)| *u == uid) {
        Some((name, _, gid)) => (uid, Some(name), *gid),
        None => (uid, None, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn argv_follows_the_four_cases() {
        let ep = s(&["/ep-1"]);
        let cmd = s(&["foo", "bar"]);
        let run = |c: &[&str], a: &[&str]| argv(&ep, &cmd, &s(c), &s(a)).expect("argv");
        assert_eq!(run(&[], &[]), s(&["/ep-1", "foo", "bar"]));
        assert_eq!(run(&["/ep-2"], &[]), s(&["/ep-2"]));
        assert_eq!(run(&[], &["zoo", "boo"]), s(&["/ep-1", "zoo", "boo"]));
        assert_eq!(
            run(&["/ep-2"], &["zoo", "boo"]),
            s(&["/ep-2", "zoo", "boo"])
        );
        assert_eq!(
            argv(&s(&[""]), &s(&["sh"]), &[], &[]).expect("cmd only"),
            s(&["sh"])
        );
        assert_eq!(argv(&[], &[], &[], &[]), Err(NoCommand));
        assert_eq!(argv(&s(&[""]), &[], &[], &[]), Err(NoCommand));
    }

    #[test]
    fn env_puts_image_values_under_the_containers() {
        let out = env(
            "pod-a",
            &s(&["PATH=/bin", "FROM_IMAGE=1", "EMPTY"]),
            &[
                ("FROM_IMAGE".into(), "2".into()),
                ("X".into(), "$(FROM_IMAGE)".into()),
            ],
        );
        let want: Vec<(String, String)> = [
            ("PATH", "/bin"),
            ("HOSTNAME", "pod-a"),
            ("FROM_IMAGE", "2"),
            ("EMPTY", ""),
            ("X", "$(FROM_IMAGE)"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(out, want);
        assert_eq!(working_dir(None, Some("/work")), "/work");
        assert_eq!(working_dir(Some("/tmp/w"), Some("/work")), "/tmp/w");
        assert_eq!(working_dir(None, Some("")), "/");
    }

    #[test]
    fn users_resolve_from_the_images_passwd_and_group() {
        let passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
        let group = "root:x:0:\napp:x:1000:\nextra:x:2000:app,other\n";
        let r = |u: &ImageUser, ru, rg| resolve_user(u, ru, rg, passwd, group);
        let app = image_user(Some("app"));
        assert_eq!(app, ImageUser::Name("app".into()));
        assert_eq!(
            r(&app, None, None).expect("app"),
            ProcessUser {
                uid: 1000,
                gid: 1000,
                groups: vec![2000, 1000]
            }
        );
        assert_eq!(r(&app, Some(0), None).expect("root").uid, 0);
        assert_eq!(r(&app, Some(0), Some(3000)).expect("group").gid, 3000);
        assert_eq!(r(&app, Some(4242), None).expect("unknown uid").gid, 0);
        // `USER 1000:2000` takes the gid from passwd, not 2000; `4242:4242` runs with gid 0.
        assert_eq!(
            r(&image_user(Some("1000:2000")), None, None)
                .expect("1000")
                .gid,
            1000
        );
        assert_eq!(
            r(&image_user(Some("4242:4242")), None, None)
                .expect("4242")
                .gid,
            0
        );
        assert_eq!(r(&image_user(None), None, None).expect("none").uid, 0);
        assert_eq!(
            r(&image_user(Some("nobody2")), None, None),
            Err(NoUsersFound)
        );
    }
}
