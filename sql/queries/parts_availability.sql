-- GET /api/method/universal_workshop.api.get_parts_availability?item_code=ITEM-00001
-- The item and its stock per warehouse, with totals. Tags: item:<item_code> (the item row and
-- its Bin rows).

-- @result item one required Item:item_code
SELECT `item_code`, `item_name`, `item_group`, `stock_uom`, `standard_rate`, `is_stock_item`, `disabled`
FROM `tabItem`
WHERE `name` = :item_code;

-- @result stock many
SELECT `warehouse`, `actual_qty`, `reserved_qty`, `ordered_qty`, `projected_qty`
FROM `tabBin`
WHERE `item_code` = :item_code
ORDER BY `warehouse`;

-- @result . merge
SELECT COALESCE(SUM(`actual_qty`), 0) AS `total_actual_qty`,
       COALESCE(SUM(`projected_qty`), 0) AS `total_projected_qty`
FROM `tabBin`
WHERE `item_code` = :item_code;
