-- GET /api/method/universal_workshop.api.get_vehicle_history?vehicle=VEH-00001
-- The vehicle (with its owner's name) and its service orders, newest first, with the
-- technician's name. Tags: vehicle:<vehicle>, the owner's customer:<id>, the
-- technicians' technician:<id>, each by the linked row's own name (see workshop_schedule.sql).

-- @result vehicle one required Vehicle:vehicle
SELECT v.`name`, v.`license_plate`, v.`vin`, v.`make`, v.`model`, v.`year`, v.`color`, v.`odometer`,
       COALESCE(c.`name`, v.`customer`) AS `customer`, c.`customer_name`
FROM `tabVehicle` v
LEFT JOIN `tabCustomer` c ON c.`name` = v.`customer`
WHERE v.`name` = :vehicle;

-- @result orders many
SELECT o.`name`, o.`service_date`, o.`status`, o.`service_type`, o.`description`,
       COALESCE(t.`name`, o.`technician_assigned`) AS `technician_assigned`, t.`technician_name`, o.`estimated_cost`,
       o.`total_amount`
FROM `tabService Order` o
LEFT JOIN `tabTechnician` t ON t.`name` = o.`technician_assigned`
WHERE o.`vehicle` = :vehicle
ORDER BY o.`service_date` DESC, o.`name` DESC
LIMIT 500;
