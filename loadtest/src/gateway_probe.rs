//! The gateway's resident memory and CPU time: from /proc when its pid is known (works for any
//! implementation, the Node peer included), else from its `/metrics`.

/// One reading.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Reading {
    pub rss_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    /// The part of `cpu_seconds` spent in the kernel (from /proc only): at paced load most of a
    /// delivery's cost is the kernel's (a socket write per event), whatever the implementation.
    pub system_seconds: Option<f64>,
}

/// Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux everywhere it matters).
const USER_HZ: f64 = 100.0;

/// Every node together: from /proc when their pids are known, else from their `/metrics`.
pub async fn read(pids: &[u32], http: &reqwest::Client, urls: &[String]) -> Reading {
    if !pids.is_empty() {
        return from_procs(pids);
    }
    let mut readings = Vec::new();
    for url in urls {
        readings.push(from_metrics(http, url).await);
    }
    sum(&readings)
}

/// The sum of several processes' readings (n/a when any is).
pub fn from_procs(pids: &[u32]) -> Reading {
    sum(&pids.iter().map(|p| from_proc(*p)).collect::<Vec<_>>())
}

fn sum(readings: &[Reading]) -> Reading {
    let total = |f: fn(&Reading) -> Option<f64>| -> Option<f64> {
        readings.iter().map(f).sum::<Option<f64>>()
    };
    Reading {
        rss_bytes: total(|r| r.rss_bytes.map(|b| b as f64)).map(|b| b as u64),
        cpu_seconds: total(|r| r.cpu_seconds),
        system_seconds: total(|r| r.system_seconds),
    }
}

fn from_proc(pid: u32) -> Reading {
    let rss_bytes = std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let times = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| {
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let rest = s.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (user, system) = (f.get(11)?.parse::<f64>().ok()?, f.get(12)?.parse::<f64>().ok()?);
        Some(((user + system) / USER_HZ, system / USER_HZ))
    });
    Reading { rss_bytes, cpu_seconds: times.map(|t| t.0), system_seconds: times.map(|t| t.1) }
}

async fn from_metrics(http: &reqwest::Client, url: &str) -> Reading {
    let Ok(resp) = http.get(format!("{url}/metrics")).send().await else {
        return Reading::default();
    };
    let Ok(text) = resp.text().await else { return Reading::default() };
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    Reading {
        rss_bytes: value("process_resident_memory_bytes").map(|v| v as u64),
        cpu_seconds: value("process_cpu_seconds_total"),
        system_seconds: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_reading_splits_its_cpu_into_user_and_kernel_time() {
        // Some user time for this test process to have spent.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let r = from_procs(&[std::process::id()]);
        let (total, kernel) = (r.cpu_seconds.unwrap(), r.system_seconds.unwrap());
        assert!(total > 0.0 && (0.0..=total).contains(&kernel), "{total} {kernel}");
        assert!(r.rss_bytes.unwrap() > 0);
    }
}
