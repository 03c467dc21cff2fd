import CLibUV
import Glibc

/// Streams a file region into a connection with libuv's file API (its thread pool does the
/// blocking reads): read a chunk, queue it, wait until the socket took it, read the next.
final class FileSender {
    unowned let connection: Connection
    unowned let loop: EventLoop
    let request: UnsafeMutablePointer<uv_fs_t>
    let buffer: UnsafeMutablePointer<CChar>
    let chunkSize = 64 * 1024
    let path: String
    var fd: Int32 = -1
    var offset: Int64
    var remaining: Int64
    let sequence: UInt64
    var waitingForDrain = false
    var busy = false
    var cancelled = false

    init(connection: Connection, path: String, offset: Int64, length: Int64, sequence: UInt64) {
        self.connection = connection
        self.loop = connection.loop
        self.path = path
        self.offset = offset
        self.remaining = length
        self.sequence = sequence
        request = .allocate(capacity: 1)
        buffer = .allocate(capacity: chunkSize)
    }

    deinit {
        request.deallocate()
        buffer.deallocate()
    }

    static func start(connection: Connection, path: String, offset: Int64, length: Int64, sequence: UInt64) {
        let sender = FileSender(connection: connection, path: path, offset: offset, length: length, sequence: sequence)
        connection.fileSender = sender
        sender.open()
    }

    /// Each request in flight holds a reference to the sender, released by its callback.
    private var context: UnsafeMutableRawPointer { Unmanaged.passRetained(self).toOpaque() }

    private func open() {
        busy = true
        request.pointee.data = context
        let rc = uv_fs_open(loop.uv, request, path, O_RDONLY | O_CLOEXEC, 0) { req in
            let sender = Unmanaged<FileSender>.fromOpaque(req!.pointee.data).takeRetainedValue()
            let result = req!.pointee.result
            uv_fs_req_cleanup(req)
            sender.busy = false
            guard !sender.cancelled else { if result >= 0 { sender.closeFile(Int32(result)) }; return }
            guard result >= 0 else { sender.fail(); return }
            sender.fd = Int32(result)
            sender.readNext()
        }
        if rc != 0 { Unmanaged<FileSender>.fromOpaque(request.pointee.data).release(); busy = false; fail() }
    }

    private func readNext() {
        guard !cancelled else { return }
        if remaining <= 0 { finish(); return }
        busy = true
        var buf = uv_buf_init(buffer, UInt32(min(Int64(chunkSize), remaining)))
        request.pointee.data = context
        let rc = uv_fs_read(loop.uv, request, uv_file(fd), &buf, 1, offset) { req in
            let sender = Unmanaged<FileSender>.fromOpaque(req!.pointee.data).takeRetainedValue()
            let result = Int(req!.pointee.result)
            uv_fs_req_cleanup(req)
            sender.busy = false
            sender.readCompleted(result)
        }
        if rc != 0 { Unmanaged<FileSender>.fromOpaque(request.pointee.data).release(); busy = false; fail() }
    }

    private func readCompleted(_ count: Int) {
        guard !cancelled else { closeFile(fd); return }
        guard count > 0 else { fail(); return }  // the file is shorter than promised
        offset += Int64(count)
        remaining -= Int64(count)
        connection.queueRaw(Array(UnsafeRawBufferPointer(start: buffer, count: count)))
        waitingForDrain = true
    }

    /// The connection wrote everything queued.
    func writeDrained() {
        guard waitingForDrain else { return }
        waitingForDrain = false
        readNext()
    }

    private func finish() {
        closeFile(fd)
        fd = -1
        connection.fileSender = nil
        connection.finishStream(failed: false)
    }

    private func fail() {
        closeFile(fd)
        fd = -1
        connection.fileSender = nil
        connection.finishStream(failed: true)
    }

    func cancel() {
        cancelled = true
        if !busy { closeFile(fd); fd = -1 }
        connection.fileSender = nil
    }

    private func closeFile(_ descriptor: Int32) {
        guard descriptor >= 0 else { return }
        let req = UnsafeMutablePointer<uv_fs_t>.allocate(capacity: 1)
        uv_fs_close(loop.uv, req, uv_file(descriptor)) { req in
            uv_fs_req_cleanup(req)
            req?.deallocate()
        }
    }
}
