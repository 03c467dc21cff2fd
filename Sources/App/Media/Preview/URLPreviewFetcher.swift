import Matrix
import Synchronization
import Transport

/// Fetches one page or image for a URL preview through the preview's own `HTTPClient` (its
/// blacklist is `media.url_preview.ip_range_blacklist`, applied to every resolved address,
/// redirects included): only http/https, `url_blacklist` checked on every hop, at most
/// `maxRedirects` redirects, the body capped at `max_spider_size`, only HTML and images
/// accepted. Failures are the `MatrixError`s Synapse answers (502 mostly, 403 for a
/// blacklisted URL). Called by `URLPreviewer` inside its deadline.
struct URLPreviewFetcher: Sendable {
    let client: HTTPClient
    let configuration: Configuration.URLPreview

    static let maxRedirects = 10
    /// Some sites give Open Graph data only to crawlers; no version (it would leak it).
    static let userAgent = "Myelin (bot; URL preview)"

    /// A fetched body and what its response said about it.
    struct Document: Sendable {
        /// Where the body came from (after redirects): relative references resolve against it.
        var url: PreviewURL
        var contentType: String
        var body: [UInt8]
        var fileName: String?

        var isHTML: Bool { Self.isHTML(contentType) }
        var isImage: Bool { Self.isImage(contentType) }
        static func isHTML(_ type: String) -> Bool {
            let t = type.lowercased()
            return t.hasPrefix("text/html") || t.hasPrefix("application/xhtml")
        }
        static func isImage(_ type: String) -> Bool { type.lowercased().hasPrefix("image/") }
    }

    /// `url`'s body, following redirects; `accept` says which content types are wanted.
    func fetch(_ url: PreviewURL, accept: @Sendable (String) -> Bool) async throws -> Document {
        var current = url
        var redirects = 0
        while true {
            try Self.checkURLBlacklist(current, configuration.urlBlacklist)
            let response: HTTPClientResponse
            var request = current.request(headers: headers)
            request.maxResponseBytes = configuration.maxSpiderSize
            do {
                response = try await client.execute(request)
            } catch let error as HTTPClientError {
                throw Self.matrixError(error, limit: configuration.maxSpiderSize)
            }
            if [301, 302, 303, 307, 308].contains(response.status), let location = response.headers["Location"] {
                guard redirects < Self.maxRedirects else {
                    throw MatrixError(.unknown, "Too many redirects", status: 502)
                }
                guard let next = current.resolve(location) else {
                    throw MatrixError(.unknown, "Redirected to an unusable URL", status: 502)
                }
                redirects += 1
                current = next
                continue
            }
            guard (200...299).contains(response.status) else {
                throw MatrixError(.unknown, "Got error \(response.status)", status: 502)
            }
            let contentType = response.headers["Content-Type"] ?? "application/octet-stream"
            guard accept(contentType) else {
                throw MatrixError(.unknown, "Requested file's content type not allowed for this operation: \(contentType.prefix(100))",
                                  status: 502)
            }
            var body: [UInt8] = []
            do {
                for try await chunk in response.body {
                    body += chunk
                    // The client enforces the cap too; this keeps the promise whatever its configuration.
                    guard body.count <= configuration.maxSpiderSize else {
                        throw HTTPClientError(.tooLarge)
                    }
                    try Task.checkCancellation()
                }
            } catch let error as HTTPClientError {
                throw Self.matrixError(error, limit: configuration.maxSpiderSize)
            }
            try Task.checkCancellation()
            return Document(url: current, contentType: contentType, body: body,
                            fileName: Self.fileName(response.headers["Content-Disposition"]))
        }
    }

    var headers: HTTPHeaders {
        var headers = HTTPHeaders()
        headers.add("User-Agent", Self.userAgent)
        headers.add("Accept-Language", configuration.acceptLanguage.joined(separator: ", "))
        headers.add("Accept", "text/html,application/xhtml+xml,image/*;q=0.9,*/*;q=0.1")
        return headers
    }

    /// 403 when an entry of `url_blacklist` matches (Synapse's answer).
    static func checkURLBlacklist(_ url: PreviewURL, _ entries: [URLBlacklistEntry]) throws {
        if entries.contains(where: { $0.matches(url) }) {
            throw MatrixError(.unknown, "URL blocked by url pattern blacklist entry", status: 403)
        }
    }

    static func matrixError(_ error: HTTPClientError, limit: Int) -> MatrixError {
        switch error.kind {
        case .blacklisted, .resolutionFailed:
            // Synapse says so for a blacklisted address too (its resolver drops them).
            return MatrixError(.unknown, "DNS resolution failure during URL preview generation", status: 502)
        case .tooLarge:
            return MatrixError(.tooLarge, "Requested file is too large > \(limit) bytes", status: 502)
        case .connectTimeout, .readTimeout:
            return MatrixError(.unknown, "Timed out fetching the URL", status: 504)
        case .tooManyRedirects:
            return MatrixError(.unknown, "Too many redirects", status: 502)
        case .connectFailed, .invalidResponse, .tls, .shutDown:
            return MatrixError(.unknown, "Failed to download content", status: 502)
        }
    }

    /// The file name of a `Content-Disposition` header (`filename*=UTF-8''...` preferred).
    static func fileName(_ header: String?) -> String? {
        guard let header, header.utf8.count <= 2048 else { return nil }
        var plain: String?
        for part in header.split(separator: ";") {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { continue }
            let key = pair[0].trimmingCharacters().lowercased()
            var value = pair[1].trimmingCharacters()
            if key == "filename*" {
                let pieces = value.split(separator: "'", maxSplits: 2, omittingEmptySubsequences: false)
                if pieces.count == 3, pieces[0].lowercased() == "utf-8",
                   let decoded = PercentDecoding.decode(pieces[2], plusAsSpace: false), !decoded.isEmpty {
                    return String(decoded.prefix(255))
                }
            } else if key == "filename" {
                if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
                if !value.isEmpty { plain = String(value.prefix(255)) }
            }
        }
        return plain
    }
}

private extension Substring {
    func trimmingCharacters() -> String { String(self).trimmingWhitespace() }
}

/// Runs `operation`, or throws `error` once `timeout` passes first. The operation is then
/// cancelled and left to finish on its own (the HTTP client's own timeouts bound it): the
/// caller is answered at the deadline, not when a slow server gives up.
func withDeadline<T: Sendable>(_ timeout: Duration, error: MatrixError,
                               _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let waiter = DeadlineWaiter<T>()
    return try await withCheckedThrowingContinuation { continuation in
        waiter.slot.withLock { $0 = continuation }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            guard !Task.isCancelled else { return }
            waiter.resume(with: .failure(error))
        }
        let work = Task {
            let result: Result<T, any Error>
            do { result = .success(try await operation()) } catch { result = .failure(error) }
            timer.cancel()
            waiter.resume(with: result)
        }
        // The timer won: stop the work at its next cancellation check.
        Task {
            _ = await timer.result
            if !timer.isCancelled { work.cancel() }
        }
    }
}

/// The continuation `withDeadline` resumes once, from whichever side comes first.
private final class DeadlineWaiter<T: Sendable>: Sendable {
    let slot = Mutex<CheckedContinuation<T, any Error>?>(nil)

    func resume(with result: Result<T, any Error>) {
        slot.withLock { pending in
            pending?.resume(with: result)
            pending = nil
        }
    }
}
