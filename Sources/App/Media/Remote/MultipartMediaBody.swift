import Dispatch
import Glibc
import Transport

/// The `multipart/mixed` body of a federation media answer (server-server API "Content
/// Repository"): a first part `application/json` `{}` (the metadata, empty today), a second
/// part with the file's `Content-Type` and `Content-Disposition`, then the close delimiter.
/// The framing is built here around the file, which streams from disk in chunks read on a
/// dedicated Dispatch queue (never the cooperative pool), one chunk ahead of the socket: the
/// transport asks for the next chunk only once the previous one left (`writeChunk` waits for
/// the drain), so memory per download stays a chunk or two. Built by `FederationMediaEndpoints`.
struct MultipartMediaBody {
    let boundary: String
    let head: [UInt8]
    let tail: [UInt8]

    /// `headers`: the second part's header fields (Content-Type, Content-Disposition).
    init(boundary: String = MultipartMediaBody.randomBoundary(), partHeaders: [(name: String, value: String)]) {
        self.boundary = boundary
        var text = "--\(boundary)\r\nContent-Type: application/json\r\n\r\n{}\r\n--\(boundary)\r\n"
        for (name, value) in partHeaders {
            // A CR or LF in a value (a stored file name, say) would end the part's head.
            guard !value.utf8.contains(where: { $0 == 13 || $0 == 10 }) else { continue }
            text += "\(name): \(value)\r\n"
        }
        text += "\r\n"
        head = Array(text.utf8)
        tail = Array("\r\n--\(boundary)--\r\n".utf8)
    }

    var contentType: String { "multipart/mixed; boundary=\(boundary)" }

    /// 32 random hex characters (boundaries need not be secret, only absent from the file;
    /// a random one makes a collision with the content vanishingly unlikely).
    static func randomBoundary() -> String {
        var generator = SystemRandomNumberGenerator()
        let hex = Array("0123456789abcdef".utf8)
        return String(decoding: (0..<32).map { _ in hex[Int(generator.next() % 16)] }, as: UTF8.self)
    }

    /// The whole response: status 200, this body's Content-Type, the file streamed between
    /// `head` and `tail` with the exact Content-Length.
    func response(filePath: String, fileLength: Int64) -> HTTPResponse {
        let total = Int64(head.count) + fileLength + Int64(tail.count)
        var response = HTTPResponse(status: 200, body: .stream(length: total, chunks: chunks(filePath: filePath, fileLength: fileLength)))
        response.contentType = contentType
        return response
    }

    /// `head`, the file's `fileLength` bytes, `tail`. A file shorter than promised fails the
    /// stream (the transport then closes the connection: a peer cannot take a truncated body
    /// for a whole one).
    func chunks(filePath: String, fileLength: Int64) -> AsyncThrowingStream<[UInt8], any Error> {
        let source = FramedFileChunks(head: head, reader: FileChunkReader(path: filePath, length: fileLength), tail: tail)
        return AsyncThrowingStream(unfolding: { try await source.next() })
    }
}

/// `head`, then the reader's chunks, then `tail`, one per `next()`.
private final class FramedFileChunks: @unchecked Sendable {
    // @unchecked: `stage` is touched only by `next()`, which the stream's single consumer
    // (the transport's writer task) calls one at a time.
    private let head: [UInt8]
    private let reader: FileChunkReader
    private let tail: [UInt8]
    private var stage = 0

    init(head: [UInt8], reader: FileChunkReader, tail: [UInt8]) {
        self.head = head
        self.reader = reader
        self.tail = tail
    }

    func next() async throws -> [UInt8]? {
        switch stage {
        case 0:
            stage = 1
            return head
        case 1:
            if let chunk = try await reader.next() { return chunk }
            stage = 2
            return tail
        default:
            return nil
        }
    }
}

/// Reads a file region in chunks with blocking `read(2)` calls on a Dispatch queue, one call
/// per `next()`. Closes the file at the end, on failure, or when dropped.
final class FileChunkReader: @unchecked Sendable {
    // @unchecked: `fd` and `remaining` are touched only by the block running on `queue`
    // (the caller awaits each `next()` before asking for another).
    static let queue = DispatchQueue(label: "myelin.media.file-read", attributes: .concurrent)
    static let chunkSize = 256 * 1024

    private let path: String
    private var fd: Int32 = -1
    private var remaining: Int64
    private var opened = false

    init(path: String, length: Int64) {
        self.path = path
        self.remaining = max(0, length)
    }

    deinit { if fd >= 0 { close(fd) } }

    /// The next chunk, or nil once `length` bytes were read.
    func next() async throws -> [UInt8]? {
        try await withCheckedThrowingContinuation { continuation in
            FileChunkReader.queue.async {
                continuation.resume(with: Result { try self.readChunk() })
            }
        }
    }

    private func readChunk() throws -> [UInt8]? {
        guard remaining > 0 else { closeFile(); return nil }
        if !opened {
            opened = true
            fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw FileReadError(path: path, errno: errno) }
        }
        guard fd >= 0 else { throw FileReadError(path: path, errno: EBADF) }
        let want = Int(min(Int64(FileChunkReader.chunkSize), remaining))
        var buffer = [UInt8](repeating: 0, count: want)
        let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, want) }
        guard got > 0 else {
            let code = got == 0 ? EIO : errno
            closeFile()
            throw FileReadError(path: path, errno: code)
        }
        if got < want { buffer.removeLast(want - got) }
        remaining -= Int64(got)
        if remaining == 0 { closeFile() }
        return buffer
    }

    private func closeFile() {
        if fd >= 0 { close(fd); fd = -1 }
    }
}

/// A media file could not be read (removed under us, shorter than its row says).
struct FileReadError: Error, CustomStringConvertible {
    let path: String
    let errno: Int32
    var description: String { "cannot read \(path): errno \(errno)" }
}
