import Matrix
import Persistence
import Transport

/// Friend categories of the enhanced API (`/_synapse/enhanced/friends/categories...`): a
/// user's own named groups, each friend in at most one.
enum FriendCategories {
    static let maxName = 100
    static let maxColor = 32

    static func json(_ c: FriendCategoryRecord, count: Int64? = nil) -> JSON {
        var entry: [String: JSON] = ["category_id": .string(c.categoryID), "id": .string(c.categoryID), "name": .string(c.name),
                                     "color": c.color.map { .string($0) } ?? .null, "created_ts": .int(c.createdTS)]
        if let count { entry["friend_count"] = .int(count) }
        return .object(entry)
    }

    /// `GET /categories`: `{categories: [...]}`.
    static func list(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await FriendsEndpoints.me(context)
        let list = try await context.app.database.friends.categories(of: user, limit: Friends.listLimit).map { json($0.0, count: $0.1) }
        return .json(["categories": .array(list), "total": .int(Int64(list.count))])
    }

    /// `POST /categories` `{name, color?}`: the category; 409 when the name is taken.
    static func create(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await FriendsEndpoints.me(context)
        let body = try await context.jsonObject()
        guard let name = try Friends.text(body, "name", max: maxName), !name.isEmpty else {
            throw MatrixError(.missingParam, "name is required")
        }
        let color = try Friends.text(body, "color", max: maxColor)
        let record = FriendCategoryRecord(categoryID: Friends.newID("cat_"), userID: user.rawValue, name: name, color: color,
                                          createdTS: Clock.nowMilliseconds())
        guard let created = try await context.app.database.friends.createCategory(record) else {
            throw MatrixError("M_CATEGORY_EXISTS", "You have a category of that name", status: 409)
        }
        return .json(json(created, count: 0))
    }

    static func categoryID(_ context: RequestContext) throws -> String {
        let id = context.parameter("categoryId")
        guard !id.isEmpty, id.utf8.count <= 255 else { throw MatrixError(.invalidParam, "Invalid category id") }
        return id
    }

    /// `PUT /categories/{categoryId}` `{name?, color?}`.
    static func update(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await FriendsEndpoints.me(context)
        let id = try categoryID(context)
        let body = try await context.jsonObject()
        let name = try Friends.text(body, "name", max: maxName)
        if name?.isEmpty == true { throw MatrixError(.invalidParam, "name must not be empty") }
        var color: String?? = .none
        if body["color"] != nil { color = .some(try Friends.text(body, "color", max: maxColor)) }
        switch try await context.app.database.friends.updateCategory(id, of: user, name: name, color: color) {
        case .updated(let record): return .json(json(record))
        case .notFound: throw MatrixError(.notFound, "No such category")
        case .nameTaken: throw MatrixError("M_CATEGORY_EXISTS", "You have a category of that name", status: 409)
        }
    }

    /// `DELETE /categories/{categoryId}`: its friends keep no category.
    static func delete(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await FriendsEndpoints.me(context)
        guard try await context.app.database.friends.deleteCategory(try categoryID(context), of: user) else {
            throw MatrixError(.notFound, "No such category")
        }
        await Friends.publish(context.app, [user])
        return .json([:])
    }

    /// `PUT /{userId}/category` `{category_id}` (null: none).
    static func move(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await FriendsEndpoints.me(context)
        let friend = try FriendsEndpoints.pathUser(context)
        let body = try await context.jsonObject()
        let category = try Friends.text(body, "category_id", max: 255)
        guard try await context.app.database.friends.setCategory(category, of: user, on: friend) else {
            throw MatrixError(.notFound, category == nil ? "Not a friend" : "Not a friend, or no such category")
        }
        await Friends.publish(context.app, [user])
        return .json([:])
    }
}
