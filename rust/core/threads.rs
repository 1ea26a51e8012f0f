//! Parallel parts on scoped threads.
//!
//! rayon's pool threads sleep when idle, and a job split for them waits until
//! the kernel runs the woken worker. On the 2-core VM we measure on, that
//! worker often waited for the busy core: after the pool had idled 5 ms or
//! more, a rayon split of two 2 ms parts took 3 to 4 ms (median of 50), and
//! two scoped threads 2.2 ms. A fit's parallel parts are of that size and
//! come between serial work (PIRLS, the optimizer, Python), so
//! [`on_threads`] runs them on scoped threads, the calling thread taking the
//! first part itself. The number of threads is still rayon's
//! ([`threads`]: `RAYON_NUM_THREADS`, or the cores).

/// The threads a parallel part may use: rayon's setting.
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// `f(0), …, f(n − 1)` in order, each part on its own thread (the calling
/// thread runs `f(0)`). A part's panic is raised again in the caller.
pub fn on_threads<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if n <= 1 {
        return (0..n).map(&f).collect();
    }
    let f = &f;
    std::thread::scope(|sc| {
        let others: Vec<_> = (1..n).map(|i| sc.spawn(move || f(i))).collect();
        let mut out = Vec::with_capacity(n);
        out.push(f(0));
        for h in others {
            out.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::on_threads;

    #[test]
    fn parts_come_back_in_order_and_each_runs_once() {
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let out = on_threads(5, |i| {
            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (i, std::thread::current().id())
        });
        assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!(runs.into_inner(), 5);
        // the caller runs the first part, each other part has its own thread
        assert_eq!(out[0].1, std::thread::current().id());
        let mut ids: Vec<_> = out.iter().map(|o| o.1).collect();
        ids.sort_by_key(|id| format!("{id:?}"));
        ids.dedup();
        assert_eq!(ids.len(), 5);
        assert!(on_threads(0, |i| i).is_empty());
    }

    #[test]
    fn a_part_s_panic_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| on_threads(3, |i| assert!(i != 2, "part {i}")));
        let msg = caught.unwrap_err();
        assert_eq!(
            msg.downcast_ref::<String>().map(String::as_str),
            Some("part 2")
        );
    }
}
