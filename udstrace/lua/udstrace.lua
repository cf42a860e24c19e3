-- udstrace.lua: the metadata udstrace writes in each packet's comment, as Wireshark fields
-- (udstrace.pid, udstrace.comm, udstrace.path, ...) for display filters and columns.
-- Installed by `udstrace extcap install`, which puts the field declarations in place of the
-- @FIELDS@ line below, from udstrace's one table of packet fields (udstrace/src/packet/fields.rs):
-- number_fields and string_fields (key -> ProtoField), wide_fields (64-bit numbers) and order
-- (the comment's order), and http2_port. Without the plugin, everything is still in the comment.

local proto = Proto("udstrace", "udstrace Unix socket metadata")

-- @FIELDS@

local all = {}
for _, f in pairs(number_fields) do table.insert(all, f) end
for _, f in pairs(string_fields) do table.insert(all, f) end
proto.fields = all

local comment = Field.new("frame.comment")

-- Values escape bytes as \xNN (see docs/FORMAT.md).
local function unescape(v)
    return (v:gsub("\\x(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

function proto.dissector(tvb, pinfo, tree)
    local c = comment()
    if c == nil then return end
    local text = tostring(c.value)
    if not text:find("type=", 1, true) or not text:find("ino=", 1, true) then return end
    local values = {}
    for k, v in text:gmatch("(%S+)=(%S*)") do values[k] = v end
    local comm = unescape(values.comm or "")
    local sub = tree:add(proto, string.format("udstrace: %s[%s] %s", comm, values.pid or "?",
                                                values.type or "?"))
    for _, k in ipairs(order) do
        local v = values[k]
        if v ~= nil then
            if number_fields[k] then
                local n = tonumber(v)
                if n ~= nil then
                    if wide_fields[k] then
                        sub:add(number_fields[k], UInt64.new(n))
                    else
                        sub:add(number_fields[k], n)
                    end
                end
            elseif string_fields[k] then
                sub:add(string_fields[k], unescape(v))
            end
        end
    end
end

register_postdissector(proto)

-- HTTP/2 (gRPC) sockets get http2_port (udstrace/src/output/ports.rs): Wireshark has neither
-- a port nor a TCP heuristic for HTTP/2 in clear text, so the plugin hands it that one.
local ok, http2 = pcall(Dissector.get, "http2")
if ok and http2 ~= nil then
    DissectorTable.get("tcp.port"):add(http2_port, http2)
end
