//! A `podrun0` bridge podrun did not make (an older podrun's, or one made by hand) has
//! no address of its own and would follow its lowest port's MAC; the first podrun to
//! use it pins the address it has, so pods coming and going never change the gateway's
//! MAC. Runs in a network and mount namespace of its own (root), with sysfs mounted
//! there, so the host's bridge is not touched.

mod common;

use common::Podrun;

#[test]
fn an_existing_bridge_without_an_address_of_its_own_gets_it_pinned() {
    let podrun = Podrun::new();
    let bin = env!("CARGO_BIN_EXE_podrun");
    let manifest = podrun.state_dir().join("pod.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  restartPolicy: Never\n  containers: [{name: a, image: busybox, command: [\"true\"]}]\n",
    )
    .unwrap();
    let script = format!(
        r#"set -e
mount -t sysfs sysfs /sys
ip link add podrun0 type bridge
ip link set podrun0 up
echo "before $(cat /sys/class/net/podrun0/addr_assign_type) $(cat /sys/class/net/podrun0/address)"
{bin} --state-dir {state} run --host-rootfs --timeout 60s -f {manifest} >/dev/null
echo "after $(cat /sys/class/net/podrun0/addr_assign_type) $(cat /sys/class/net/podrun0/address)"
"#,
        state = podrun.state_dir().display(),
        manifest = manifest.display(),
    );
    let out = std::process::Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |line: &str, i: usize| -> String {
        text.lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.split(' ').nth(i))
            .unwrap_or_else(|| panic!("no {line} line in {text}"))
            .to_string()
    };
    // NET_ADDR_RANDOM before; NET_ADDR_SET after, with the same address, although a
    // pod's veth joined the bridge and left it again.
    assert_eq!(field("before", 1), "1", "{text}");
    assert_eq!(field("after", 1), "3", "{text}");
    assert_eq!(field("before", 2), field("after", 2), "{text}");
}
