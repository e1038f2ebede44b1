//! Parses and admits every manifest named on the command line, printing one
//! line per object: `OK kind/name` or the error kubectl would print.

// A command-line driver around the pure model: it reads the files itself.
#![allow(clippy::disallowed_methods)]

use podrun_model::{Object, admit_job, admit_pod, admit_service, parse_manifests};

fn main() {
    for path in std::env::args().skip(1) {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                println!("{path}: {e}");
                continue;
            }
        };
        match parse_manifests(&text, &path) {
            Err(e) => println!("{path}: {}", e.kubectl_message()),
            Ok(objs) => {
                for o in objs {
                    let id = format!("{}/{}", o.kind(), o.name().unwrap_or(""));
                    let res = match o {
                        Object::Pod(p) => admit_pod(*p).map(|_| ()),
                        Object::Job(j) => admit_job(*j).map(|_| ()),
                        Object::Service(s) => admit_service(*s).map(|_| ()),
                        _ => Ok(()),
                    };
                    match res {
                        Ok(()) => println!("{path}: OK {id}"),
                        Err(e) => println!("{path}: {}", e.kubectl_message()),
                    }
                }
            }
        }
    }
}
