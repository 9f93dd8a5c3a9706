-- The user access review's rows. The load refused every malformed row (a
-- decision other than keep or remove, a decision without its reviewer or time,
-- a time that is neither a date nor a timestamp with an offset, a second
-- decision on an item in the same file), so the casts here are safe.

with

access_reviews as (

    select * from {{ source('reviews', 'access_reviews') }} as access_reviews
    where {{ this_run('access_reviews') }}

),

final as (

    select
        access_reviews.item_key,
        access_reviews.cluster,
        access_reviews.login_role,
        access_reviews.granted_role,
        access_reviews.holder_identity,
        access_reviews.identity_status,
        access_reviews.role_owner,
        access_reviews.decision as review_decision,
        lower(access_reviews.reviewer) as reviewer,
        -- a date alone is the start of that day in UTC
        case
            when {{ re_match('access_reviews.reviewed_at', "'^[0-9]{4}-[0-9]{2}-[0-9]{2}$'") }}
                then {{ local_to_utc(
                    'access_reviews.reviewed_at::date::' ~ t_timestamp(), "'UTC'"
                ) }}
            else cast(access_reviews.reviewed_at as {{ t_timestamptz() }})
        end as reviewed_at,
        access_reviews.comment as review_comment,
        {{ re_substr('access_reviews.locator', "'^(.*):[0-9]+$'", 1) }} as review_file,
        ({{ re_substr('access_reviews.locator', "':([0-9]+)$'", 1) }})::integer
            as review_line,
        {{ carry_evidence('access_reviews') }}
    from access_reviews

)

select * from final
