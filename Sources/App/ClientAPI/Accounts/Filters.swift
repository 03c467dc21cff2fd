import Matrix
import Persistence
import Transport

/// `POST /user/{userId}/filter` and `GET /user/{userId}/filter/{filterId}` (spec:
/// client-server API, "Filtering"). The filter is validated against the specification's
/// model and stored as sent; sync applies it.
enum Filters {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.post, "/user/{userId}/filter", createFilter)
        routes.client(.get, "/user/{userId}/filter/{filterId}", getFilter)
    }

    /// `POST /user/{userId}/filter`: stores a filter and returns its id.
    static func createFilter(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireSelf("Can only create filters for your own user")
        let body = try await context.jsonObject()
        try validate(filter: body)
        let id = try await context.app.database.filters.addFilter(userID: requester.userID,
                                                                  json: JSON.object(body).encodedString)
        return .json(["filter_id": .string(String(id))])
    }

    /// `GET /user/{userId}/filter/{filterId}`: a stored filter, as it was sent.
    static func getFilter(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireSelf("Cannot get filters for other users")
        guard let id = Int64(context.parameter("filterId")), id >= 0 else {
            throw MatrixError(.invalidParam, "Invalid filter_id")
        }
        guard let stored = try await context.app.database.filters.filter(userID: requester.userID, filterID: id) else {
            throw MatrixError(.notFound, "No such filter")
        }
        return HTTPResponse(contentType: "application/json", bytes: Array(stored.utf8))
    }

    // MARK: the filter model (spec: "Filter", "RoomFilter", "RoomEventFilter", "EventFilter")

    static func validate(filter: [String: JSON]) throws {
        if let fields = filter["event_fields"] { try strings(fields, "event_fields") }
        if let format = filter["event_format"] {
            guard let text = format.stringValue, text == "client" || text == "federation" else {
                throw MatrixError(.badJSON, "event_format must be client or federation")
            }
        }
        for key in ["presence", "account_data"] {
            if let value = filter[key] { try eventFilter(value, key) }
        }
        if let room = filter["room"] {
            guard let object = room.objectValue else { throw MatrixError(.badJSON, "room must be an object") }
            for key in ["rooms", "not_rooms"] {
                if let value = object[key] { try strings(value, "room.\(key)") }
            }
            if let value = object["include_leave"], value.boolValue == nil {
                throw MatrixError(.badJSON, "room.include_leave must be a boolean")
            }
            for key in ["ephemeral", "state", "timeline", "account_data"] {
                if let value = object[key] { try roomEventFilter(value, "room.\(key)") }
            }
        }
    }

    static func eventFilter(_ value: JSON, _ path: String) throws {
        guard let object = value.objectValue else { throw MatrixError(.badJSON, "\(path) must be an object") }
        if let limit = object["limit"] {
            guard let n = limit.intValue, n >= 0 else { throw MatrixError(.badJSON, "\(path).limit must be a non-negative integer") }
        }
        for key in ["types", "not_types", "senders", "not_senders"] {
            if let list = object[key] { try strings(list, "\(path).\(key)") }
        }
    }

    static func roomEventFilter(_ value: JSON, _ path: String) throws {
        try eventFilter(value, path)
        let object = value.objectValue ?? [:]
        for key in ["rooms", "not_rooms"] {
            if let list = object[key] { try strings(list, "\(path).\(key)") }
        }
        for key in ["contains_url", "lazy_load_members", "include_redundant_members", "unread_thread_notifications"] {
            if let flag = object[key], flag.boolValue == nil {
                throw MatrixError(.badJSON, "\(path).\(key) must be a boolean")
            }
        }
    }

    static func strings(_ value: JSON, _ path: String) throws {
        guard let list = value.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else {
            throw MatrixError(.badJSON, "\(path) must be a list of strings")
        }
        // Room and sender lists name rooms and users (as Synapse checks; SyTest "Check
        // creating invalid filters returns 4xx").
        if path.hasSuffix("rooms") {
            guard list.allSatisfy({ (try? RoomID(parsing: $0.stringValue ?? "")) != nil }) else {
                throw MatrixError(.badJSON, "\(path) must be a list of room ids")
            }
        } else if path.hasSuffix("senders") {
            guard list.allSatisfy({ (try? UserID(parsing: $0.stringValue ?? "")) != nil }) else {
                throw MatrixError(.badJSON, "\(path) must be a list of user ids")
            }
        }
    }
}
