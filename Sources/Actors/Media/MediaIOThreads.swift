/// The media code's blocking file calls (`write(2)` of an upload's chunks, `fsync`, `rename`,
/// `unlink`, directory walks) run on these dedicated threads, never on Swift's cooperative
/// pool: an upload's chunk write can wait on a slow disk for milliseconds, and two such waits
/// would stall every handler on a 2-core machine. An upload awaits each write before it
/// submits the next, so one upload's jobs never overlap and stay in order. Used by
/// `MediaUploadActor` and `MediaFileStore`'s async functions, and by other media code for its
/// own blocking calls.
public typealias MediaIOThreads = BlockingThreadPool

extension BlockingThreadPool {
    /// The process's media I/O threads. Eight, on any machine: a write to the page cache is
    /// quick, but each finished upload `fsync`s its file, which waits on the disk for up to
    /// seconds under load; with two threads, two such waits held every other upload's writes
    /// behind them (requests of unrelated uploads took over 10 s in the test suite). Threads
    /// blocked in `fsync` cost no CPU, and the file system commits concurrent syncs together.
    public static let shared = BlockingThreadPool(threads: 8)
}
