/// The media code's blocking file calls (`write(2)` of an upload's chunks, `fsync`, `rename`,
/// `unlink`, directory walks) run on these dedicated threads, never on Swift's cooperative
/// pool: an upload's chunk write can wait on a slow disk for milliseconds, and two such waits
/// would stall every handler on a 2-core machine. An upload awaits each write before it
/// submits the next, so one upload's jobs never overlap and stay in order. Used by
/// `MediaUploadActor` and `MediaFileStore`'s async functions, and by other media code for its
/// own blocking calls.
public typealias MediaIOThreads = BlockingThreadPool

extension BlockingThreadPool {
    /// The process's media I/O threads (two: reads and writes of the page cache are quick,
    /// a third thread would only add contention on this kind of machine).
    public static let shared = BlockingThreadPool(threads: 2)
}
